"""A small code location for the fork-server launcher's tests (tests/test_run_launcher.py)."""

import os
import sys
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"out": str, "modules": dg.Field([str], default_value=[]),
                      "modules_out": dg.Field(str, default_value="")})
def say_pids(context: dg.OpExecutionContext) -> None:
    """Writes "<pid> <parent pid>": which process ran the op, and which process forked it; and to
    ``modules_out``, those of ``modules`` that the process had imported when the op started."""
    Path(context.op_config["out"]).write_text(f"{os.getpid()} {os.getppid()}")
    if context.op_config["modules_out"]:
        imported = [name for name in context.op_config["modules"] if name in sys.modules]
        Path(context.op_config["modules_out"]).write_text(" ".join(imported))


@dg.job
def quick():
    say_pids()


@dg.op(config_schema={"started": str, "release": str, "timeout_s": dg.Field(float, default_value=120.0)})
def hold(context: dg.OpExecutionContext) -> None:
    """Writes its pid to ``started``, then returns once ``release`` exists (or fails at the deadline):
    the test decides when the run is mid-flight and for how long."""
    Path(context.op_config["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + context.op_config["timeout_s"]
    while not Path(context.op_config["release"]).exists():
        if time.monotonic() > deadline:
            raise dg.Failure("never released")
        time.sleep(0.05)


@dg.job
def held():
    hold()


# In process, like generate_video: the ops run in the run worker the launcher forked.
defs = dg.Definitions(jobs=[quick, held], executor=dg.in_process_executor)
