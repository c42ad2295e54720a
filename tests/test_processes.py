"""videogen.devtools.processes: a service started at a lower CPU priority stays there, children included."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from videogen.devtools.processes import (
    AUTOGROUP,
    session_members,
    start_in_new_session,
    stop_session,
)

# Prints what it and a child it starts see: niceness, session id, and the autogroup line (Linux).
REPORT = """
import json, os, subprocess, sys
def seen():
    try:
        group = open("/proc/self/autogroup").read().strip()
    except OSError:
        group = None
    return {"nice": os.nice(0), "sid": os.getsid(0), "own_pid": os.getpid(), "autogroup": group}
child = subprocess.run([sys.executable, "-c", "import os; print(os.nice(0), os.getsid(0))"],
                       capture_output=True, text=True, check=True).stdout.split()
print(json.dumps({**seen(), "child_nice": int(child[0]), "child_sid": int(child[1])}))
"""


def _report(tmp_path: Path, nice: int) -> dict:
    log_path = tmp_path / f"report-{nice}.log"
    with open(log_path, "wb") as log:
        process = start_in_new_session([sys.executable, "-c", REPORT], log=log, nice=nice)
    try:
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        stop_session(process, grace_s=5)
    assert session_members(process.pid) == []
    return {**json.loads(log_path.read_text().strip().splitlines()[-1]), "pid": process.pid}


def test_a_session_started_nice_keeps_its_niceness_for_the_processes_it_starts(tmp_path):
    expected = min(19, os.nice(0) + 7)  # niceness adds up to 19 at most
    report = _report(tmp_path, 7)
    assert report["own_pid"] == report["pid"] == report["sid"]  # the command itself (exec'd), leading its session
    assert report["nice"] == expected
    assert (report["child_nice"], report["child_sid"]) == (expected, report["pid"])
    if Path(AUTOGROUP).exists():  # this kernel schedules sessions as groups: the group is lowered too
        assert report["autogroup"].endswith(" nice 7"), report["autogroup"]


def test_a_session_started_without_nice_is_left_as_it_was(tmp_path):
    report = _report(tmp_path, 0)
    assert report["nice"] == os.nice(0)
    if Path(AUTOGROUP).exists():
        assert report["autogroup"].endswith(" nice 0"), report["autogroup"]


def test_a_command_that_does_not_exist_is_reported_as_popen_would():
    with pytest.raises(FileNotFoundError, match="no-such-videogen-command"):
        start_in_new_session(["no-such-videogen-command"], nice=5)


@pytest.mark.parametrize("nice", [-1, 20])
def test_a_niceness_out_of_range_is_refused_before_anything_starts(nice):
    with pytest.raises(ValueError, match=f"nice must be 0 to 19, not {nice}"):
        start_in_new_session([sys.executable, "-c", "raise SystemExit(3)"], nice=nice)

