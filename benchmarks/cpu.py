"""Where a machine's CPU time goes during a measured phase, from /proc: the benchmarks' one meter."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_ticks(pid: int, *, reaped_children: bool = False) -> int | None:
    """A live process's CPU ticks (utime + stime), with those of the children it has reaped (cutime +
    cstime) when asked; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return sum(int(f) for f in fields[11:15 if reaped_children else 13])


def command_line(pid: int) -> str:
    """A process's command line ("" when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def machine_busy_ticks() -> int:
    """Busy jiffies of the whole machine: all but idle and iowait (guest time is already in user)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values[:8]) - values[3] - values[4]


class CpuMeter:
    """CPU seconds of each group of processes between start() and stop() (``used_s``), of this process
    (``own_label``) and of the rest of the machine ("other"), and the cores the machine kept busy.

    ``groups`` maps a name to a function listing its pids. Two ways to count:
    - ``reaped_children=False``: per process, what it used in the window; one that exits in between
      loses its share (fits pooled servers that live the whole run).
    - ``reaped_children=True``: the group's total, each process with the children it reaped, so that
      short-lived children (run workers reaped by their fork server, ffmpeg by its worker) count in
      full as long as parent and child are in one group. Where one is not (a parent that exits in the
      window moves to the group that reaps it; a child not reaped yet at stop() is missed until it is),
      the split is off by that."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], *, own_label: str = "this process",
                 reaped_children: bool = False) -> None:
        self.groups = groups
        self.own_label = own_label
        self.reaped_children = reaped_children
        self.used_s: dict[str, float] = {}
        self.busy_cores = float("nan")

    def _snapshot(self) -> tuple[dict[str, dict[int, int]], int, float, float]:
        groups = {name: {pid: t for pid in pids() if (t := process_ticks(pid, reaped_children=self.reaped_children))
                         is not None} for name, pids in self.groups.items()}
        times = os.times()
        own = times.user + times.system + (times.children_user + times.children_system if self.reaped_children else 0)
        return groups, machine_busy_ticks(), own, time.monotonic()

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> dict[str, float]:
        (groups, busy, own, wall), (groups0, busy0, own0, wall0) = self._snapshot(), self._before
        if self.reaped_children:
            used = {name: (sum(pids.values()) - sum(groups0[name].values())) / CLK_TCK for name, pids in groups.items()}
        else:
            used = {name: sum(t - groups0[name].get(pid, 0) for pid, t in pids.items()) / CLK_TCK
                    for name, pids in groups.items()}
        used[self.own_label] = own - own0
        machine_s = (busy - busy0) / CLK_TCK
        used["other"] = max(0.0, machine_s - sum(used.values()))
        self.used_s = used
        self.busy_cores = machine_s / (wall - wall0) if wall > wall0 else float("nan")
        return used
