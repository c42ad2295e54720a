"""Start a service in a session of its own, and stop everything in that session.

The Dagster daemon starts a gRPC code server and a fork server (launcher/), which forks one process
per run; Ray starts its GCS, raylet and one process per actor (Serve controller, proxy,
replicas), the actors each in a process group of their own. None of them calls ``setsid``, so
the session of the process we started is the one handle that reaches them all. Stopping the
leader alone is not enough: run workers outlive their daemon (forked ones are ordinary processes;
a code server whose daemon is gone waits for the ones it spawned before it exits, SIGTERM included:
Python joins non-daemonic multiprocessing children at exit), so a run that hangs stays alive
indefinitely. Hence: SIGTERM the leader's
process group (a graceful stop), wait until no process of the session is left, SIGKILL every one
still there, by pid. Never by matching command names: a pattern matches other people's processes.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any


def start_in_new_session(args: Sequence[str], *, log: IO[bytes] | None = None, nice: int = 0,
                         **popen: Any) -> subprocess.Popen:
    """Start ``args`` as the leader of a new session and process group (both ids are its pid).

    ``nice`` > 0 lowers the CPU priority of the session, for good: the process's niceness and, on
    Linux with autogroups, its session's. With autogroups (the default on desktop and server kernels,
    for processes in the root CPU cgroup) the scheduler first splits the CPUs evenly between sessions
    and only then by niceness inside each, so the process's niceness alone changes nothing against
    another session. Without them (autogroups off, or a container's own CPU cgroup) niceness alone
    counts. Every process the session starts later inherits both."""
    if nice < 0 or nice > 19:
        raise ValueError(f"nice must be 0 to 19, not {nice}")
    args = list(args)
    if nice:
        env = popen.get("env")
        path = (env if env is not None else os.environ).get("PATH", os.defpath)
        command = args[0] if os.sep in args[0] else shutil.which(args[0], path=path)
        if command is None or not os.access(command, os.X_OK):  # as Popen would say without the shell
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", args[0])
        # A shell between setsid() and the command (no preexec_fn: unsafe in a threaded parent): it
        # lowers the new session's autogroup, then execs ``nice`` that execs the command, so the pid
        # is still the command's and nothing the command starts can escape the lower priority.
        args = ["/bin/sh", "-c", LOWER_PRIORITY, str(nice), shutil.which("nice") or "/usr/bin/nice", command, *args[1:]]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True, **popen)


AUTOGROUP = "/proc/self/autogroup"
# $0: the niceness, $1: nice, then the command. A kernel without autogroups has no such file (the
# process's niceness then counts alone); one write per 100 ms is allowed to an unprivileged user
# across the machine (EAGAIN), hence the second try.
LOWER_PRIORITY = (f'{{ echo "$0" > {AUTOGROUP} || {{ sleep 0.1; echo "$0" > {AUTOGROUP}; }}; }} 2>/dev/null; '
                  'NICE="$1"; shift; exec "$NICE" -n "$0" -- "$@"')


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``, whatever their process group (Linux: /proc)."""
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
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` in the process tree (children, their children…), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def kill_survivors(pids: list[int], *, timeout_s: float = 5.0) -> list[int]:
    """Wait up to ``timeout_s`` for ``pids`` to exit, then SIGKILL those still alive; returns those."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _is_alive(pid)]
        if alive:
            time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


def _is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def _wait_until_empty(sid: int, leader: subprocess.Popen | None, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        if leader is not None:
            leader.poll()  # reap our own child so it does not linger as a zombie
        left = session_members(sid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop_session(process: subprocess.Popen, *, grace_s: float = 30.0) -> list[int]:
    """SIGTERM ``process``'s process group, wait up to ``grace_s`` for every process of its session to exit,
    then SIGKILL each one left.

    Returns the pids that had to be killed. Raises if something survives SIGKILL for 10 s."""
    sid = process.pid
    try:
        os.killpg(sid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # the leader's group is gone; members in other groups may remain
    stubborn = _wait_until_empty(sid, process, grace_s)
    for pid in stubborn:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if stubborn:
        left = _wait_until_empty(sid, process, 10.0)
        if left:
            raise RuntimeError(f"processes {left} of session {sid} survived SIGKILL")
    process.wait(timeout=10)
    return stubborn
