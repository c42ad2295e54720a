"""The sensors' log: JSON lines like every videogen process, written by the sensors themselves.

Dagster's ``context.log`` on a sensor always prints through its own coloured console logger, which no
setting turns into JSON; what a tick did stays visible in the UI through its SkipReason and its run
requests.
"""

from videogen.logs import json_logger

log = json_logger("videogen.sensors", "dagster-sensors")
