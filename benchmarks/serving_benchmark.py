"""Serving benchmarks (issue 8, warm serving with Ray Serve), each next to a baseline measured in this run.

    .venv/bin/python -m benchmarks.serving_benchmark [--scale full|small] [--only NAME] [--users 4]

Sections (``--only`` takes the name in brackets); each starts its own PostgreSQL, ``videogen
serve-models`` on a free port and the real Dagster daemon (sensor → queued run coordinator → run
launcher → ops) with a DAGSTER_HOME of its own, and stops them by session at the end:

1+2 [backlog]  N requests (full 20, small 4) of 128×128, 25 frames, 10 steps inserted at once.
    1. generator busy fraction: union of the replica's pipeline-call intervals for those requests
       (``GET /stats``) ÷ wall-clock from the first one's start to the last one's finish; target ≥ 0.85.
       Baseline: today's path (no VIDEOGEN_SERVE_URL: each run generates in its own process), same
       requests, same run: Σ jobs.gpu_seconds ÷ the same first-start → last-finish span, each job's
       pipeline call placed at [its `encode` event − gpu_seconds, its `encode` event]. Also printed:
       the "work-equivalent" fraction, N × the warm loop's generate time ÷ the same span (a call that
       contention for the cores slows down counts as busy in the first figure, not in this one).
    2. throughput: first row inserted → last `succeeded` vs a plain warm Python loop that loads the
       model once and generates, encodes and writes N files (benchmarks/warm_loop.py); target ≤ 1.5.
3   [overhead] M tiny jobs (full 200, small 20) of 32×32, 9 frames, 2 steps inserted at once: time
       until all are final (target ≤ 300 s at 200), runs in flight over time (sampled every 2 s, and
       exactly from the run records' start/end times), wall ÷ M. Today's path
       is not rerun (~25 min): the reference is issue 8's measurement, 1,448 s for 200 (7.24 s/job).
4   [latency]  one request at the tiny defaults (64×64, 9 frames, 4 steps) on a warm system, row
       inserted → `succeeded`, median of 5, minus the bare warm generate + encode (median of 5, same
       parameters, in-process): target ≤ 3 s; the rest broken down from job_events, the Dagster run's
       events and the replica's /stats. Measured twice:
       a. at a random moment: each row is inserted after a random pause of 0–5 s (seeded) once the
          previous request is final, so it lands at a random phase of the sensor daemon's loop, as a
          request on an idle system does;
       b. back to back: each row inserted as soon as the previous request is final.
       Dagster's sensor daemon starts a sensor's tick at most every 5 s (MIN_INTERVAL_LOOP_TIME in
       dagster/_daemon/sensor.py; no setting lowers it). The pending-jobs sensor's tick that finds
       nothing keeps watching for a row until 4 s after its start (VIDEOGEN_SENSOR_WAIT_S), so a row
       arriving while a tick watches gets its run within a poll; one that arrives after a tick has
       ended (found a row, or reached its deadline) waits for the next loop. Back to back, each row
       arrives ~3 s after the tick that launched the previous one ended early: (b) shows that case.
       The run queue dequeues every dequeue_interval_seconds (an integer, 1 here), ~0.5 s more.
5   [memory]   peak RSS (VmHWM) of the run workers (the processes the fork servers forked, found in
       the daemon's session, sampled from /proc until they exit; target < 300 MB) vs a run worker of
       today's path; the replica's RSS.

Requests are spread round-robin over ``--users`` users (default 4 = the run queue's 4 slots), so the
per-user limit of 2 runs does not throttle a backlog that a single user would see throttled by design.
PostgreSQL: a server started per section (Dagster's storage reached through PgBouncer's Unix socket,
as scripts/env.sh sets up the local instance), or VIDEOGEN_BENCH_ADMIN_URL (a URL whose role may create
databases; everything over that URL). Run it on a quiet machine: orchestration, Ray and generation share its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import requests
import sqlalchemy as sa

from benchmarks.cpu import CpuMeter, command_line
from videogen.config import load_settings
from videogen.db.schema import TERMINAL_STATUSES, job_events, jobs
from videogen.devtools.processes import (
    descendants,
    session_members,
    start_in_new_session,
    stop_session,
)

REPO = Path(__file__).resolve().parents[1]
BENCH = {"width": 128, "height": 128, "num_frames": 25, "fps": 8, "steps": 10}
OVERHEAD = {"width": 32, "height": 32, "num_frames": 9, "fps": 8, "steps": 2}
TINY = {"width": 64, "height": 64, "num_frames": 9, "fps": 8, "steps": 4}  # the tiny model's defaults
SCALES = {
    "full": {"backlog": 20, "overhead": 200, "latency": 5, "memory": 4},
    "small": {"backlog": 4, "overhead": 20, "latency": 5, "memory": 4},
}
TODAY_OVERHEAD_S, TODAY_OVERHEAD_JOBS = 1448.0, 200  # issue 8, measured on main before Serve
SECTIONS = ("backlog", "overhead", "latency", "memory")


class BenchError(RuntimeError):
    pass


# ── small helpers ────────────────────────────────────────────────────────────────────────────────
def epoch(value: datetime | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for start, finish in sorted(intervals):
        if finish <= end:
            continue
        total += finish - max(start, end)
        end = finish
    return total


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, change in edges:
        level += change
        peak = max(peak, level)
    return peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def proc_status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM… of a live process in kB; {} when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("Vm"):
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0])
    return values


def base_env(work: Path) -> dict[str, str]:
    """The environment of every service: ours, minus what would point it at another setup."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIDEOGEN_SERVE_URL", "DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME", "VIDEOGEN_HOME")}
    env["VIDEOGEN_MODEL_CACHE"] = str(work / "models")  # one cache for the whole run, built once
    return env


def ensure_model(work: Path) -> None:
    code = ("import sys; from pathlib import Path; from videogen.generation.loader import ensure_offline_model; "
            "from videogen.generation.registry import BUILTIN_MODELS; "
            "ensure_offline_model(BUILTIN_MODELS['tiny'], Path(sys.argv[1]))")
    run = subprocess.run([sys.executable, "-c", code, str(work / "models")], cwd=REPO, env=base_env(work),
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise BenchError(f"building the tiny model failed:\n{run.stderr[-3000:]}")


def warm_loop(work: Path, name: str, params: dict[str, int], n: int) -> dict[str, Any]:
    """benchmarks/warm_loop.py in a fresh process (nothing else of ours running but PostgreSQL)."""
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.warm_loop", str(work / f"loop-{name}"), str(n),
         *(str(params[k]) for k in ("width", "height", "num_frames", "fps", "steps"))],
        cwd=REPO, env={**base_env(work), "VIDEOGEN_HOME": str(work / "loop-home")}, capture_output=True, text=True,
        check=False)
    if run.returncode != 0:
        raise BenchError(f"the warm loop failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# ── services ─────────────────────────────────────────────────────────────────────────────────────
@contextlib.contextmanager
def postgres(work: Path) -> Iterator[str]:
    """An admin URL: VIDEOGEN_BENCH_ADMIN_URL, else a PostgreSQL server of this section's own."""
    admin = os.environ.get("VIDEOGEN_BENCH_ADMIN_URL")
    if admin:
        yield admin
        return
    from videogen.devtools.local_postgres import LocalPostgres, bouncer_for

    server = LocalPostgres(work / "pg", free_port())
    server.start()
    bouncer = bouncer_for(server)
    try:
        bouncer.start()
        LOCAL_SERVERS[server.url("postgres")] = bouncer
        yield server.url("postgres")
    finally:
        LOCAL_SERVERS.pop(server.url("postgres"), None)
        bouncer.stop()
        server.stop()


LOCAL_SERVERS: dict[str, Any] = {}  # admin URL → the PgBouncer in front of the server this benchmark started


def dagster_storage_url(admin_url: str, url: str) -> str:
    """Dagster's storage through PgBouncer's Unix socket when the server is this benchmark's own, as
    scripts/env.sh sets up the local instance (Dagster connects afresh for every query)."""
    from sqlalchemy.engine import make_url

    bouncer = LOCAL_SERVERS.get(admin_url)
    return bouncer.socket_url(make_url(url).database) if bouncer is not None else url


def create_database(admin_url: str, *, migrate: bool) -> str:
    from tests.conftest import create_database as create

    return create(admin_url, migrate=migrate)


@dataclass
class Serve:
    process: subprocess.Popen
    url: str
    log: Path

    def stats(self) -> dict[str, Any]:
        response = requests.get(self.url + "/stats", timeout=30)
        response.raise_for_status()
        return response.json()

    def requests_for(self, job_ids: list[int]) -> list[dict[str, Any]]:
        prefixes = tuple(f"job-{job_id}-" for job_id in job_ids)
        return [r for r in self.stats()["requests"] if r["request_id"].startswith(prefixes)]


@contextlib.contextmanager
def generation_service(work: Path, timeout_s: float = 300.0) -> Iterator[Serve]:
    """``videogen serve-models`` on a free port, in a session of its own; stopped by that session."""
    port = free_port()
    log = work / "serve-models.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**base_env(work), "VIDEOGEN_HOME": str(work / "serve-home")}
    from serving.local import StartupError, start_in_background

    try:
        process, url = start_in_background(port, log, env=env, timeout_s=timeout_s)
    except StartupError as error:
        raise BenchError(str(error)) from None
    try:
        yield Serve(process, url, log)
    finally:
        stop_session(process, grace_s=60)


@dataclass
class Platform:
    """The real daemon on its own databases and DAGSTER_HOME; generation in Serve or in the run."""

    daemon: subprocess.Popen
    engine: sa.Engine
    instance: Any  # dagster.DagsterInstance on the daemon's storage (run records, event logs)
    log: Path
    users: int
    serve: Serve | None
    dagster_url: str

    def insert(self, n: int, params: dict[str, int] | None, *, tag: str) -> list[int]:
        """``n`` rows in one transaction (one created_at), users round-robin."""
        rows = [{"user_id": f"bench-{i % self.users}", "prompt": f"a red fox running in snow ({tag} {i})",
                 "seed": str(i), **{k: str(v) for k, v in (params or {}).items()}} for i in range(n)]
        with self.engine.begin() as conn:
            return list(conn.execute(jobs.insert().returning(jobs.c.id), rows).scalars())

    def statuses(self, ids: list[int]) -> dict[int, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids))).all())

    def wait_final(self, ids: list[int], timeout_s: float, what: str, *, poll_s: float = 0.5,
                   on_poll: Callable[[dict[int, str]], None] | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = self.statuses(ids)
            if on_poll is not None:
                on_poll(statuses)
            if len(statuses) == len(ids) and all(s in TERMINAL_STATUSES for s in statuses.values()):
                break
            if self.daemon.poll() is not None:
                raise BenchError(f"the Dagster daemon exited ({self.daemon.returncode}) during {what}:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                counts = {s: list(statuses.values()).count(s) for s in set(statuses.values())}
                raise BenchError(f"{what}: not final after {timeout_s:.0f} s ({counts}):\n{tail(self.log)}")
            time.sleep(poll_s)
        rows = self.rows(ids)
        failed = [r for r in rows if r["status"] != "succeeded"]
        if failed:
            raise BenchError(f"{what}: {len(failed)} of {len(ids)} jobs did not succeed, e.g. job {failed[0]['id']} "
                             f"{failed[0]['status']}: {failed[0]['error_code']}: {failed[0]['error_message']}")
        return rows

    def rows(self, ids: list[int]) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(jobs).where(jobs.c.id.in_(ids)).order_by(jobs.c.id)).mappings()]

    def events(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        with self.engine.connect() as conn:
            for event in conn.execute(sa.select(job_events).where(job_events.c.job_id.in_(ids))
                                      .order_by(job_events.c.id)).mappings():
                found[event["job_id"]].append(dict(event))
        return found

    def dagster_sessions(self) -> int:
        """Connections opened so far to Dagster's database (pg_stat_database.sessions, PostgreSQL ≥ 14)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT sessions FROM pg_stat_database WHERE datname = :name"),
                                    {"name": sa.engine.make_url(self.dagster_url).database}).scalar_one())

    def warm_up(self) -> None:
        """One tiny job through the whole path: the code server is loaded, the replica has the model."""
        self.wait_final(self.insert(1, None, tag="warm-up"), 600, "the warm-up job")


@contextlib.contextmanager
def platform(admin_url: str, work: Path, *, serve: Serve | None, users: int) -> Iterator[Platform]:
    import dagster as dg

    work.mkdir(parents=True, exist_ok=True)
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    app_url = create_database(admin_url, migrate=True)
    dagster_url = dagster_storage_url(admin_url, create_database(admin_url, migrate=False))
    env = {**base_env(work), "DATABASE_URL": app_url, "DAGSTER_PG_URL": dagster_url, "DAGSTER_HOME": str(home),
           "VIDEOGEN_HOME": str(work / "videogen")}
    if serve is not None:
        env["VIDEOGEN_SERVE_URL"] = serve.url
    # Our own handle on the daemon's storage, made first (it creates Dagster's tables before the daemon starts).
    previous = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = dagster_url
    try:
        instance = dg.DagsterInstance.from_config(str(home))
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = previous
    log = work / "daemon.log"
    with open(log, "wb") as out:
        daemon = start_in_new_session([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                                       str(REPO / "workspace.yaml")], log=out, cwd=REPO, env=env,
                                       nice=load_settings().orchestration_nice)
    engine = sa.create_engine(app_url)
    try:
        yield Platform(daemon, engine, instance, log, users, serve, dagster_url)
    finally:
        stop_session(daemon, grace_s=60)
        instance.dispose()
        engine.dispose()


# ── measurements shared by sections ──────────────────────────────────────────────────────────────
def estimated_intervals(p: Platform, rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each job's pipeline call as [its first `encode` event − gpu_seconds, that event]: how long it
    ran is exact (gpu_seconds), where it ends is the start of the next stage (slightly late)."""
    events = p.events([r["id"] for r in rows])
    intervals = []
    for row in rows:
        encode = next(epoch(e["created_at"]) for e in events[row["id"]] if e["stage"] == "encode")
        intervals.append((encode - row["gpu_seconds"], encode))
    return intervals


def busy(intervals: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(busy fraction, busy seconds, span seconds) over first start → last finish."""
    span = max(f for _, f in intervals) - min(s for s, _ in intervals)
    used = union_length(intervals)
    return (used / span if span > 0 else float("nan")), used, span


def end_to_end(rows: list[dict[str, Any]]) -> float:
    return max(epoch(r["finished_at"]) for r in rows) - min(epoch(r["created_at"]) for r in rows)


class WorkerPeaks:
    """Peak RSS (VmHWM) of the run workers of the daemon's session: the processes that a fork server
    (launcher/fork_server.py) forked, found by a scan of the session every 50 ms from the moment they
    exist, then read from /proc/<pid>/status every 50 ms until they exit (the last reading is at most
    50 ms before the end). Before, the pid came from jobs.worker, written by the generate stage's first
    heartbeat: a tiny job's worker could be gone before the next lookup, and none was sampled."""

    def __init__(self, daemon: subprocess.Popen) -> None:
        self.session = daemon.pid
        self.peak_kb: dict[int, int] = {}  # pid → largest VmHWM seen
        self.gone: set[int] = set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    @staticmethod
    def _forked_run_worker(pid: int) -> bool:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            return all(b"launcher.fork_server" in Path(f"/proc/{p}/cmdline").read_bytes() for p in (pid, parent))
        except (OSError, ValueError, IndexError):  # gone meanwhile
            return False

    def _loop(self) -> None:
        try:
            while True:
                for pid in session_members(self.session):
                    if pid not in self.peak_kb and pid not in self.gone and self._forked_run_worker(pid):
                        self.peak_kb[pid] = 0
                for pid in set(self.peak_kb) - self.gone:
                    hwm = proc_status_kb(pid).get("VmHWM")
                    if hwm is None:
                        self.gone.add(pid)
                    else:
                        self.peak_kb[pid] = max(self.peak_kb[pid], hwm)
                if self._stop.is_set() and self.gone >= set(self.peak_kb):
                    return
                time.sleep(0.05)
        except BaseException as error:  # noqa: BLE001 - reported by peaks_mb, not lost with the thread
            self.error = error

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)  # run workers outlive their job by the run's last events

    def peaks_mb(self) -> list[float]:
        if self.error is not None:
            raise BenchError(f"sampling the run workers failed: {self.error!r}")
        return [kb / 1024 for kb in self.peak_kb.values() if kb > 0]  # 0: seen, but gone before a reading


# ── the sections ─────────────────────────────────────────────────────────────────────────────────
def section_backlog(work: Path, scale: dict[str, int], users: int, *, todays_path: bool = True) -> list[str]:
    n = scale["backlog"]
    lines = [f"1+2. backlog: {n} requests of 128x128, 25 frames, 10 steps inserted at once ({users} users)"]
    with postgres(work) as admin:
        loop = warm_loop(work, "backlog", BENCH, n)
        print(f"     warm loop done ({loop['loop_s']:.1f} s); starting Serve", flush=True)
        with generation_service(work / "serve") as serve, \
                platform(admin, work / "ours", serve=serve, users=users) as p:
            p.warm_up()
            cpu = cpu_meter(work, p, serve)
            cpu.start()
            ids = p.insert(n, BENCH, tag="backlog")
            ours = p.wait_final(ids, 300 + 60 * n, "the backlog through Serve")
            cpu.stop()
            records = serve.requests_for(ids)
            ours_estimated = estimated_intervals(p, ours)
        if not todays_path:
            today = today_intervals = []
        else:
            print("     Serve done; today's path (generation in each run's own process)", flush=True)
            with platform(admin, work / "today", serve=None, users=users) as p:
                p.warm_up()
                ids = p.insert(n, BENCH, tag="backlog")
                today = p.wait_final(ids, 300 + 180 * n, "the backlog on today's path")
                today_intervals = estimated_intervals(p, today)
    replica = [(r["started"], r["finished"]) for r in records if r["finished"] > 0]
    fraction, used, span = busy(replica)
    fraction_est, _, _ = busy(ours_estimated)
    today_fraction, today_used, today_span = busy(today_intervals) if today_intervals else (math.nan,) * 3
    lines += [
        f"  1. generator busy fraction                 ours {fraction:6.3f}   today's path {today_fraction:6.3f}   "
        f"(target ≥ 0.85)",
        f"       ours: replica pipeline calls {used:7.1f} s of {span:7.1f} s (first start → last finish, /stats, "
        f"{len(replica)} calls)",
        f"       today's path: Σ gpu_seconds {today_used:7.1f} s of {today_span:7.1f} s (from job_events; "
        f"the same estimate of ours gives {fraction_est:.3f})",
    ]
    ours_e2e, loop_s = end_to_end(ours), loop["loop_s"]
    today_e2e = end_to_end(today) if today else math.nan
    # A gap with the next request already in the replica is the replica's own hand-over; one where it
    # had not arrived yet is the orchestration's (Dagster's pool, the run workers) being late.
    consecutive = list(itertools.pairwise(sorted((r["started"], r["finished"], r["received"])
                                                 for r in records if r["finished"] > 0)))
    gaps = sorted(b[0] - a[1] for a, b in consecutive)
    late = [b[0] - a[1] for a, b in consecutive if b[2] > a[1]]
    loop_generate = median([i["generate_s"] for i in loop["iterations"]])
    # The same useful work measured with the loop's clock: a call slowed down by contention for the
    # cores counts as busy above, not here.
    lines.append(f"       work-equivalent (N × the warm loop's generate time ÷ the span): ours {n * loop_generate / span:.3f}, "
                 f"today's path {n * loop_generate / today_span:.3f}")
    lines += [
        f"  2. throughput, {n} requests end to end     ours {ours_e2e:7.1f} s   warm loop {loop_s:7.1f} s   "
        f"ratio {ours_e2e / loop_s:5.2f}   (target ≤ 1.5)",
        f"       today's path end to end {today_e2e:7.1f} s (ratio {today_e2e / loop_s:5.2f} to the loop)",
        f"       per request: pipeline call median, replica {median([f - s for s, f in replica]):6.2f} s, today's path "
        f"{median([r['gpu_seconds'] for r in today]) if today else math.nan:6.2f} s, warm loop {loop_generate:6.2f} s (+ encode "
        f"{median([i['encode_s'] for i in loop['iterations']]):5.2f} s)",
        f"       replica idle between consecutive calls: median {median(gaps):5.2f} s, max "
        f"{max(gaps, default=float('nan')):5.2f} s, sum {sum(gaps):5.1f} s; of those, the next request had not "
        f"reached the replica yet in {len(late)} ({sum(late):5.1f} s)",
    ]
    lines += cpu_lines(cpu, n, "request", f"rows inserted → last final; the warm loop {loop['cpu_s'] / n:.2f} per request")
    return lines


def cpu_groups(work: Path, p: Platform, serve: Serve) -> dict[str, Callable[[], list[int]]]:
    """The machine's processes in whole subtrees: the daemon's session split into the fork servers (with
    the run workers they fork and the ffmpeg those start) and the rest (the daemon, its code servers);
    Ray (every process of serve-models' session); PostgreSQL (its postmaster, which reaps its
    backends) and PgBouncer. Groups of an external server (VIDEOGEN_BENCH_ADMIN_URL) are empty."""
    def session(leader: int, marker: str, marked: bool) -> Callable[[], list[int]]:
        """The members of ``leader``'s session whose command line holds ``marker`` (or does not)."""
        def pids() -> list[int]:
            return [pid for pid in session_members(leader) if (marker in command_line(pid)) == marked]
        return pids

    def database() -> list[int]:
        try:
            leader = [int((work / "pg" / "postmaster.pid").read_text().splitlines()[0])]
        except (OSError, ValueError, IndexError):
            leader = []
        bouncers = [b.pid() for b in LOCAL_SERVERS.values()]
        backends = [child for pid in leader for child in descendants(pid)]
        return leader + backends + [pid for pid in bouncers if pid]

    return {"Dagster daemon + code servers": session(p.daemon.pid, "launcher.fork_server", False),
            "fork servers → run workers → ffmpeg": session(p.daemon.pid, "launcher.fork_server", True),
            "Ray Serve replica": session(serve.process.pid, "ServeReplica", True),
            "Ray: the rest (GCS, raylet, controller, proxy…)": session(serve.process.pid, "ServeReplica", False),
            "PostgreSQL + PgBouncer": database}


def cpu_meter(work: Path, p: Platform, serve: Serve) -> CpuMeter:
    """The meter of both sections: the groups above, each with the children its processes reaped."""
    return CpuMeter(cpu_groups(work, p, serve), own_label="this benchmark", reaped_children=True)


def cpu_lines(meter: CpuMeter, per: int, what: str, span: str) -> list[str]:
    used = meter.used_s
    return [f"  CPU seconds per {what}, by group (from /proc, {span}; {sum(used.values()):.0f} CPU-s in all, "
            f"{meter.busy_cores:.2f} of {os.cpu_count()} cores busy):"] + [
        f"     {name:48} {seconds / per:6.3f}" for name, seconds in used.items()]


def section_overhead(work: Path, scale: dict[str, int], users: int) -> list[str]:
    from dagster import DagsterRunStatus, RunsFilter

    m = scale["overhead"]
    samples: list[tuple[float, int, int, int, int, int]] = []
    next_sample = [0.0]

    with postgres(work) as admin, generation_service(work / "serve") as serve, \
            platform(admin, work / "ours", serve=serve, users=users) as p:
        p.warm_up()

        def sample(statuses: dict[int, str]) -> None:
            now = time.monotonic()
            if now < next_sample[0]:
                return
            next_sample[0] = now + 2.0
            values = list(statuses.values())
            started = p.instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.STARTING,
                                                                     DagsterRunStatus.STARTED]))
            queued = p.instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
            samples.append((time.time(), values.count("running"), started, queued,
                            sum(v in TERMINAL_STATUSES for v in values), values.count("pending")))

        cpu = cpu_meter(work, p, serve)
        cpu.start()
        ids = p.insert(m, OVERHEAD, tag="overhead")
        sessions_before = p.dagster_sessions()
        rows = p.wait_final(ids, max(900, 15 * m), "the tiny backlog", poll_s=0.5, on_poll=sample)
        cpu.stop()
        sessions = p.dagster_sessions() - sessions_before
        transport = ("PgBouncer's Unix socket, which reuses server sessions" if "-pgbouncer" in p.dagster_url
                     else "the Unix socket" if "@/" in p.dagster_url else "TCP")
        records = serve.requests_for(ids)
        run_records = p.instance.get_run_records(RunsFilter(run_ids=[r["run_id"] for r in rows]))
    wall = end_to_end(rows)
    first = min(epoch(r["created_at"]) for r in rows)
    replica = [(r["started"], r["finished"]) for r in records if r["finished"] > 0]
    denoise = median([f - s for s, f in replica])
    reference = TODAY_OVERHEAD_S / TODAY_OVERHEAD_JOBS
    lines = [
        f"3. overhead-bound backlog: {m} tiny jobs of 32x32, 9 frames, 2 steps inserted at once ({users} users)",
        f"  all final after                          ours {wall:7.1f} s   today's path (issue 8, 200 jobs, not rerun) "
        f"{TODAY_OVERHEAD_S:7.0f} s   (target ≤ 300 s at 200)",
        f"  per-run cost that remains (wall ÷ M)     ours {wall / m:7.2f} s   today's path {reference:7.2f} s   "
        f"ratio {wall / m / reference:5.2f}",
        f"       of which the replica's pipeline call: median {denoise:5.3f} s; the replica was busy "
        f"{union_length(replica) / wall:5.1%} of the drain",
        f"       server sessions opened on Dagster's database per job: {sessions / m:5.1f} (dagster-postgres "
        f"connects for every query; over {transport})",
    ]
    lines += cpu_lines(cpu, m, "job", "first row inserted → last job final")
    executing = [(r.start_time, r.end_time) for r in run_records if r.start_time and r.end_time]
    if executing:
        waits = [r.start_time - epoch(r.create_timestamp) for r in run_records if r.start_time]
        lines.append(f"  run records (RUN_START → end): {len(executing)} runs, median {median([e - s for s, e in executing]):5.2f} s "
                     f"each; created → started median {median(waits):5.1f} s; in flight: time-weighted mean "
                     f"{sum(e - s for s, e in executing) / wall:4.2f}, max {max_overlap(executing)} at once")
    if samples:
        in_flight = [s[2] for s in samples]
        lines.append(f"  runs in flight (Dagster STARTING+STARTED), sampled every 2 s: mean {statistics.mean(in_flight):4.1f}, "
                     f"max {max(in_flight)}; jobs running mean {statistics.mean(s[1] for s in samples):4.1f}")
        lines.append("       t(s)  runs in flight  runs queued  jobs running  jobs pending  jobs final")
        step = max(1, math.ceil(len(samples) / 20))
        for t, running, started, queued, final, pending in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            lines.append(f"     {t - first:6.1f}  {started:14d}  {queued:11d}  {running:12d}  {pending:12d}  {final:10d}")
    return lines


def run_marks(p: Platform, row: dict[str, Any], events: list[dict[str, Any]],
              records: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """The timestamps of one request, in the order they happen, each labelled with the segment it ends."""
    from dagster import DagsterEventType

    marks: list[tuple[str, float | None]] = [("inserted", epoch(row["created_at"]))]
    dagster: dict[str, float] = {}
    for entry in p.instance.all_logs(row["run_id"]):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        key = {DagsterEventType.RUN_ENQUEUED: "enqueued", DagsterEventType.RUN_STARTING: "starting",
               DagsterEventType.RUN_START: "start"}.get(kind)
        if kind == DagsterEventType.STEP_START and entry.step_key == "validate_prompt":
            key = "first_op"
        if key and key not in dagster:
            dagster[key] = entry.timestamp
    stage = {e["stage"]: epoch(e["created_at"]) for e in reversed(events)}  # first event of each stage
    record = next((r for r in records if r["request_id"] == f"job-{row['id']}-run-{row['run_id']}"), None)
    if record is None:
        raise BenchError(f"the replica has no request of job {row['id']}'s run {row['run_id']}")
    marks += [
        ("sensor: row → run created (queued)", dagster.get("enqueued")),
        ("run queue: dequeue + launch → RUN_STARTING", dagster.get("starting")),
        ("run worker process start: → RUN_START", dagster.get("start")),
        ("executor: RUN_START → first op", dagster.get("first_op")),
        ("validate_prompt (claim, validate)", stage.get("generate")),
        ("generate: pool slot, HTTP → replica starts", record["started"]),
        ("replica pipeline call", record["finished"]),
        ("frames back → encode op", stage.get("encode")),
        ("encode op (ffmpeg, thumbnails)", stage.get("upload")),
        ("upload + finalize", epoch(row["finished_at"])),
    ]
    return [(label, t) for label, t in marks if t is not None]


LATENCY_PAUSE_MAX_S = 5.0  # the sensor daemon's loop period: a pause of 0–5 s gives a random phase


def section_latency(work: Path, scale: dict[str, int], users: int) -> list[str]:
    import random

    repeats = scale["latency"]
    pauses = random.Random(8)
    with postgres(work) as admin:
        loop = warm_loop(work, "latency", TINY, repeats)
        with generation_service(work / "serve") as serve, \
                platform(admin, work / "ours", serve=serve, users=users) as p:
            p.warm_up()
            modes = {}
            for mode in ("at a random moment", "back to back"):
                latencies, segments, observed = [], [], []
                for i in range(repeats):
                    if mode == "at a random moment":
                        time.sleep(pauses.uniform(0, LATENCY_PAUSE_MAX_S))  # a random phase of the daemon's loop
                    started = time.monotonic()
                    job_id = p.insert(1, None, tag=f"latency {mode} {i}")[0]
                    (row,) = p.wait_final([job_id], 300, f"latency request {i} ({mode})", poll_s=0.05)
                    observed.append(time.monotonic() - started)
                    latencies.append(epoch(row["finished_at"]) - epoch(row["created_at"]))
                    marks = run_marks(p, row, p.events([job_id])[job_id], serve.requests_for([job_id]))
                    segments.append({label: t - prev_t for (_, prev_t), (label, t) in itertools.pairwise(marks)})
                modes[mode] = (latencies, segments, observed)
    bare = median([i["total_s"] for i in loop["iterations"]])
    lines = [f"4. latency of one request at the tiny defaults on a warm system (median of {repeats} each)",
             f"  bare warm generate+encode {bare:6.2f} s (generate {median([i['generate_s'] for i in loop['iterations']]):.2f} s"
             f" + encode {median([i['encode_s'] for i in loop['iterations']]):.2f} s)"]
    for mode, (latencies, segments, observed) in modes.items():
        ours = median(latencies)
        lines += [
            f"  {mode + ':':20} row inserted → succeeded {ours:6.2f} s   added {ours - bare:+6.2f} s   (target ≤ +3 s: "
            f"{'met' if ours - bare <= 3 else 'NOT met'}; each: {', '.join(f'{x:.2f}' for x in latencies)} s; "
            f"as this process saw it {median(observed):.2f} s)",
            "       where the time goes (medians of each segment; they need not add up to the median total):",
        ]
        for label in segments[0]:
            values = [s.get(label, 0.0) for s in segments]
            lines.append(f"         {label:46} {median(values):6.2f} s  ({median(values) / ours:5.1%})")
    return lines


def section_memory(work: Path, scale: dict[str, int], users: int) -> list[str]:
    k = scale["memory"]
    with postgres(work) as admin:
        with generation_service(work / "serve") as serve, \
                platform(admin, work / "ours", serve=serve, users=users) as p:
            p.warm_up()
            ids = p.insert(k, None, tag="memory")
            with WorkerPeaks(p.daemon) as ours:
                p.wait_final(ids, 600, "the memory jobs through Serve")
            stats = serve.stats()
            replica = proc_status_kb(stats["pid"])
            ray_total_kb = sum(proc_status_kb(pid).get("VmRSS", 0) for pid in session_members(serve.process.pid))
        with platform(admin, work / "today", serve=None, users=users) as p:
            p.warm_up()
            ids_today = p.insert(1, None, tag="memory")
            with WorkerPeaks(p.daemon) as today:
                p.wait_final(ids_today, 600, "the memory job on today's path")
    ours_mb, today_mb = ours.peaks_mb(), today.peaks_mb()
    if not ours_mb or not today_mb:
        raise BenchError(f"no run worker was sampled (ours {len(ours_mb)}, today's path {len(today_mb)})")
    return [
        f"5. memory (tiny defaults; {k} jobs at once through Serve, 1 on today's path)",
        f"  peak RSS (VmHWM) of a run worker         ours {max(ours_mb):7.0f} MB   today's path {max(today_mb):7.0f} MB   "
        f"(target < 300 MB; ours: max of {len(ours_mb)} workers, median {median(ours_mb):.0f} MB)",
        f"  replica (pid from /stats)                RSS {replica.get('VmRSS', 0) / 1024:7.0f} MB   peak {replica.get('VmHWM', 0) / 1024:7.0f} MB"
        f"   (the whole Ray instance, every process of serve-models' session: {ray_total_kb / 1024:.0f} MB)",
    ]


RUNNERS = {"backlog": section_backlog, "overhead": section_overhead, "latency": section_latency,
           "memory": section_memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full",
                        help="full: the issue's sizes (N=20, M=200); small: a quick check (N=4, M=20)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--users", type=int, default=4, help="users the requests are spread over (round-robin)")
    parser.add_argument("--skip-todays-path", action="store_true",
                        help="backlog: leave out today's path (about 7 of its 11 minutes) while iterating; "
                        "its figures print as nan")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    print(f"videogen serving benchmark — scale {args.scale} ({scale}); {os.cpu_count()} CPUs; "
          f"each figure next to its baseline from this run", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="videogen-serving-bench-") as tmp:
        work = Path(tmp)
        ensure_model(work)
        for name in args.only or SECTIONS:
            started = time.monotonic()
            try:
                options = {"todays_path": not args.skip_todays_path} if name == "backlog" else {}
                lines = RUNNERS[name](work / name, scale, args.users, **options)
            except BenchError as error:
                failures += 1
                lines = [f"{name}: FAILED: {error}"]
            for line in lines:
                print(line, flush=True)
            print(f"   ({name}: {time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
