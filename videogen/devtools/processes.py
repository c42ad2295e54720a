"""Start a service in a process group of its own, and stop everything in that group.

The Dagster daemon starts a gRPC code server, which starts one process per run (multiprocessing
children): none of them calls ``setsid``, so they all stay in the daemon's process group, and
that group is the one handle that reaches them all. Stopping the daemon alone is not enough: a
code server whose daemon is gone waits for its run workers to finish before it exits (SIGTERM
included: Python joins non-daemonic multiprocessing children at exit), so a run that hangs keeps
its code server alive indefinitely. Hence: SIGTERM the group, wait until every member is gone,
SIGKILL whatever is left. Never ``pkill -f``: a pattern matches other people's processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any


def start_in_new_group(args: Sequence[str], *, log: IO[bytes] | None = None, **popen: Any) -> subprocess.Popen:
    """Start ``args`` as the leader of a new session and process group (its pgid is its pid)."""
    return subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True, **popen)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux: read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The command name is in parentheses and may contain spaces; the fields after it are fixed.
        fields = stat[stat.rindex(")") + 2:].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_until_empty(pgid: int, leader: subprocess.Popen | None, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        if leader is not None:
            leader.poll()  # reap our own child so it does not linger as a zombie
        left = group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop_group(process: subprocess.Popen, *, grace_s: float = 30.0) -> list[int]:
    """SIGTERM ``process``'s group, wait up to ``grace_s`` for every member to exit, then SIGKILL the rest.

    Returns the pids that had to be killed. Raises if something survives SIGKILL for 10 s."""
    pgid = process.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return []
    stubborn = _wait_until_empty(pgid, process, grace_s)
    if stubborn:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        left = _wait_until_empty(pgid, process, 10.0)
        if left:
            raise RuntimeError(f"processes {left} of group {pgid} survived SIGKILL")
    process.wait(timeout=10)
    return stubborn
