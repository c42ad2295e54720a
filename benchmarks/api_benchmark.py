"""HTTP API benchmark (issue 9), each figure next to a baseline measured in the same run.

    .venv/bin/python -m benchmarks.api_benchmark [--requests 2000] [--runs 3] [--clients 20] [--users 50]
                                                  [--workers N] [--get-requests 1000] [--sse-samples 50]
                                                  [--no-daemon] [--no-balance] [--logs DIR] [--small]

Starts its own PostgreSQL (or uses VIDEOGEN_BENCH_ADMIN_URL, a URL whose role may create databases),
a migrated application database, ``videogen serve-api --workers N`` (default: one per CPU) and the real
Dagster daemon (``dagster-daemon run -w workspace.yaml``) on a database and DAGSTER_HOME of its own
(its storage through PgBouncer in front of our own server, as scripts/env.sh sets up; PgBouncer's CPU
counts as PostgreSQL's), each in a session of its own, stopped by session at the end. The daemon's dagster.yaml is the
project's with one change: ``max_concurrent_runs: 0``. The pending-jobs sensor then does all its real
work on every submitted row (reads the pending rows, creates one Dagster run and partition per row,
marks the row ``queued``), but the run queue launches nothing, so no generation runs: in production the
run workers and the generation replicas live in pods of their own, not on the API's machine.
``--no-daemon`` runs without it (said in the output).

Accounts: ``--users`` users made through videogen.accounts (Users.create, CreditLedger.grant,
ApiKeys.create), requests spread round-robin over them; the API's per-user rate limit and active-jobs
cap are set to 100000 (above the offered load). Clients: ``--clients`` asyncio tasks on uvloop, each
with one HTTP/1.1 keep-alive connection of its own (RawHttp: prepared request bytes, answers read by
Content-Length; httpx cost about 1 ms of CPU per request, on the cores the API is measured on),
opened (and used once) before the clock starts.
uvicorn's workers share one listening socket, and connections opened at once mostly land on one of
them (19/1 is typical here), which would leave the others idle for the whole run: so the benchmark
reads from /proc which worker holds each connection and reopens those over clients/N until every
worker holds its share (``--no-balance``: keep them where they landed). Both spreads are printed.

1. submissions/s through ``POST /api/v1/jobs`` (64×64, 9 frames, 4 steps), median of ``--runs`` runs of
   ``--requests`` requests, vs the same number of plain ``INSERT INTO jobs (user_id, prompt, width,
   height, num_frames, steps)`` through one SQLAlchemy/psycopg2 pool from ``--clients`` threads.
   Runs alternate (INSERT, API, INSERT, API…). The sensor is never waited for: it creates runs far
   slower than rows arrive (~1–3 a second here), so it is busy through every run, INSERT and API
   alike, and the backlog of pending + queued rows grows from run to run (printed). Targets: API ≥ 30 %
   of the INSERT rate and ≥ 500/s. Also printed: CPU milliseconds per request of each process group
   (from /proc; "other" is everything else on the machine) and PostgreSQL transactions per request.
2. latency of ``GET /api/v1/jobs/{id}`` (``--get-requests`` over ``--clients`` clients, ids of jobs the
   API runs created, each read with its owner's key) vs ``SELECT * FROM jobs WHERE id = …`` through the
   pool from as many threads; p50 and p99, medians over ``--runs`` runs.
3. delay from a committed progress change to the SSE event: a job put into ``running`` (claimed under
   the run the sensor created for it, or a made-up run id without the daemon; submitted first, by a
   user of its own, so that the sensor's round-robin reaches it at once), ``GET …/stream`` open,
   then ``--sse-samples`` times JobRuns.set_progress (``UPDATE jobs SET stage, progress, updated_at``)
   at random moments; delay = the client's receipt of the event carrying that progress − the commit's
   return. Baseline, on the same changes: a thread polling ``SELECT * FROM jobs WHERE id = …`` at the
   stream's own interval (api.routes.jobs.STREAM_POLL_S). Target: p50 ≤ 1 s.

Run it on a quiet machine: the client, the API, PostgreSQL and the daemon share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import queue
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from benchmarks.cpu import CpuMeter
from videogen.config import load_settings
from videogen.devtools.processes import (
    descendants,
    session_members,
    start_in_new_session,
    stop_session,
)

REPO = Path(__file__).resolve().parents[1]
BODY = {"width": 64, "height": 64, "num_frames": 9, "steps": 4}  # the tiny model's defaults
LIMIT_ABOVE_LOAD = "100000"
SUBMIT_TARGET_RATIO, SUBMIT_TARGET_RATE, SSE_TARGET_P50_S = 0.30, 500.0, 1.0
PLAIN_INSERT = sa.text("INSERT INTO jobs (user_id, prompt, width, height, num_frames, steps) "
                       "VALUES (:user_id, :prompt, :width, :height, :num_frames, :steps)")
PLAIN_SELECT = sa.text("SELECT * FROM jobs WHERE id = :id")


class BenchError(RuntimeError):
    pass


# ── small helpers ────────────────────────────────────────────────────────────────────────────────
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def base_env(work: Path) -> dict[str, str]:
    """Our environment minus anything that would point a service at another setup."""
    drop = ("DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME", "VIDEOGEN_HOME", "VIDEOGEN_SERVE_URL",
            "VIDEOGEN_STORAGE_ROOT")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("VIDEOGEN_API_")}
    env["VIDEOGEN_HOME"] = str(work / "videogen-home")
    env["VIDEOGEN_STORAGE_ROOT"] = str(work / "storage")
    return env


# ── services ─────────────────────────────────────────────────────────────────────────────────────
@dataclass
class Postgres:
    admin_url: str
    datadir: Path | None  # None: an external server (no CPU accounting)
    bouncer: Any = None  # the PgBouncer in front of our own server, for Dagster's storage (as scripts/env.sh)

    def pids(self) -> list[int]:
        """The server's processes and PgBouncer's (PostgreSQL's CPU group)."""
        if self.datadir is None:
            return []
        try:
            leader = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return []
        bouncer = self.bouncer.pid() if self.bouncer is not None else None
        return [leader, *descendants(leader), *([bouncer] if bouncer else [])]

    def dagster_url(self, url: str) -> str:
        """Dagster's storage through PgBouncer when the server is our own."""
        from sqlalchemy.engine import make_url

        return self.bouncer.socket_url(make_url(url).database) if self.bouncer is not None else url


@contextlib.contextmanager
def postgres(work: Path) -> Iterator[Postgres]:
    admin = os.environ.get("VIDEOGEN_BENCH_ADMIN_URL")
    if admin:
        yield Postgres(admin, None)
        return
    from tests.conftest import free_port
    from videogen.devtools.local_postgres import LocalPostgres, bouncer_for

    server = LocalPostgres(work / "pg", free_port())
    server.start()
    bouncer = bouncer_for(server)
    try:
        bouncer.start()
        yield Postgres(server.url("postgres"), server.datadir, bouncer)
    finally:
        bouncer.stop()
        server.stop()


def create_database(admin_url: str, *, migrate: bool) -> str:
    from tests.conftest import create_database as create

    return create(admin_url, migrate=migrate)


@dataclass
class Service:
    process: subprocess.Popen
    log: Path
    url: str = ""

    def pids(self) -> list[int]:
        return session_members(self.process.pid)

    def check(self, what: str) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{what} exited ({self.process.returncode}):\n{tail(self.log)}")


@contextlib.contextmanager
def api_server(app_url: str, work: Path, workers: int, extra_env: dict[str, str] | None = None) -> Iterator[Service]:
    from tests.conftest import free_port

    port = free_port()
    log = work / f"serve-api-{port}.log"
    env = {**base_env(work), "DATABASE_URL": app_url, "VIDEOGEN_API_JWT_SECRET": secrets.token_hex(32),
           "VIDEOGEN_API_RATE_LIMIT_PER_S": LIMIT_ABOVE_LOAD, "VIDEOGEN_API_MAX_ACTIVE_JOBS": LIMIT_ABOVE_LOAD,
           **(extra_env or {})}
    with open(log, "wb") as out:
        process = start_in_new_session([sys.executable, "-m", "videogen.cli", "serve-api", "--port", str(port),
                                        "--workers", str(workers)], log=out, cwd=REPO, env=env)
    service = Service(process, log, f"http://127.0.0.1:{port}")
    try:
        def ready() -> bool:
            service.check("serve-api")
            try:
                return httpx.get(service.url + "/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 120, "serve-api to answer /ready")
        # Every worker up: uvicorn logs one "Application startup complete." per worker process.
        wait_for(lambda: log.read_text(errors="replace").count("Application startup complete") >= workers,
                 120, f"the {workers} API workers to start")
        yield service
    finally:
        stop_session(process, grace_s=30)


@contextlib.contextmanager
def dagster_daemon(pg: Postgres, app_url: str, work: Path) -> Iterator[Service]:
    import dagster as dg
    import yaml

    home = work / "dagster_home"
    home.mkdir(parents=True)
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = 0  # the sensor runs; the run queue launches nothing
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dagster_url = pg.dagster_url(create_database(pg.admin_url, migrate=False))
    env = {**base_env(work), "DATABASE_URL": app_url, "DAGSTER_PG_URL": dagster_url, "DAGSTER_HOME": str(home)}
    # Dagster's tables made before the daemon and its code server start (as serving_benchmark does).
    previous = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = dagster_url
    try:
        dg.DagsterInstance.from_config(str(home)).dispose()
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = previous
    log = work / "daemon.log"
    with open(log, "wb") as out:
        process = start_in_new_session([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                                        str(REPO / "workspace.yaml")], log=out, cwd=REPO, env=env,
                                       nice=load_settings().orchestration_nice)
    try:
        yield Service(process, log)
    finally:
        stop_session(process, grace_s=60)


# ── accounts ─────────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class User:
    id: str
    key: str


def make_users(engine: sa.Engine, n: int, credits: str) -> list[User]:
    from videogen.accounts.credits import CreditLedger
    from videogen.accounts.keys import ApiKeys
    from videogen.accounts.users import Users

    users, ledger, keys = Users(engine), CreditLedger(engine), ApiKeys(engine)
    made = []
    for i in range(n):
        user = users.create(f"bench-{i}-{secrets.token_hex(3)}@example.com", None)
        ledger.grant(user["id"], credits, by="api-benchmark")
        made.append(User(user["id"], keys.create(user["id"], "api-benchmark").key))
    return made


# ── load generators ──────────────────────────────────────────────────────────────────────────────
@dataclass
class Load:
    wall_s: float
    latencies_s: list[float]
    statuses: Counter
    results: list[Any]  # per request: what `keep` returned (HTTP) or the statement's result (SQL)
    cpu: CpuMeter | None = None
    commits: int | None = None
    spreads: list[str] = field(default_factory=list)  # connections per API worker: opened at once, then used

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def check(self, ok: int | str, what: str) -> None:
        bad = {k: v for k, v in self.statuses.items() if k != ok}
        if bad:
            example = next((r for r in self.results if isinstance(r, str)), "")
            raise BenchError(f"{what}: {sum(bad.values())} of {len(self.latencies_s)} failed {dict(bad)} {example[:400]}")


Call = tuple[str, str, dict[str, str], Any]  # method, path, headers, json body


def _server_ends(port: int) -> dict[int, int]:
    """Established connections to ``port`` on this machine: client port → inode of the server's socket."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                found[int(remote.rsplit(":", 1)[1], 16)] = inode
    return found


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode → the pid holding it, among ``pids``."""
    owners = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        owners[int(target[8:-1])] = pid
    return owners


@dataclass
class Workers:
    """Which API worker process accepted each client connection (from /proc): with N uvicorn workers
    sharing one listening socket, connections opened at once may all land on one worker."""

    port: int
    pids: Callable[[], list[int]]
    count: int

    def owners(self, client_ports: list[int]) -> list[int | None]:
        ends, owners = _server_ends(self.port), _socket_owners(self.pids())
        return [owners.get(ends.get(port, -1)) for port in client_ports]

    def spread(self, client_ports: list[int]) -> str:
        counts = Counter(o for o in self.owners(client_ports) if o is not None)
        values = sorted(counts.values(), reverse=True) + [0] * max(0, self.count - len(counts))
        return "/".join(str(v) for v in values)


@dataclass(frozen=True)
class Reply:
    """One HTTP response as the load generator keeps it."""

    status_code: int
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class RawHttp(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request at a time: the request written as prepared
    bytes, the answer read by its Content-Length. The load generator shares the machine's cores with
    the API, so its own CPU per request is kept to a small fraction of the API's (httpx took about
    1 ms per request here, more than the API's own submission path)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> RawHttp:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    @property
    def client_port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the API closed the connection ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(BenchError(f"an answer without Content-Length: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        total = end + 4 + int(head[at + 17:line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < total:
            return
        reply = Reply(int(head[9:12]), bytes(self.buffer[end + 4:total]))
        del self.buffer[:total]
        self.waiter.set_result(reply)

    async def request(self, data: bytes) -> Reply:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.transport.close()


def http_request(method: str, path: str, headers: dict[str, str], body: Any) -> bytes:
    """The bytes of one request (keep-alive is HTTP/1.1's default)."""
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def http_load(url: str, n: int, clients: int, call: Callable[[int], Call],
              keep: Callable[[Reply], Any] = lambda r: None, meter: CpuMeter | None = None,
              workers: Workers | None = None, rebalance: bool = True) -> Load:
    """``n`` requests from ``clients`` asyncio tasks (uvloop), each its own keep-alive connection
    (:class:`RawHttp`); the clock starts once every client has its connection open. Requests are
    prepared as bytes before the clock starts. With ``workers``: connections are opened at once, then
    (``rebalance``) any on a worker holding more than its share is reopened until each worker holds
    clients/N; the spread over the workers is recorded before and after."""
    import uvloop

    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    requests = [http_request(*call(i)) for i in range(n)]
    health = http_request("GET", "/health", {}, None)
    latencies: list[float] = [0.0] * n
    results: list[Any] = [None] * n
    statuses: Counter = Counter()
    counter = itertools.count()
    spreads: list[str] = []

    async def open_client() -> RawHttp:
        conn = await RawHttp.open(host, int(port))
        reply = await conn.request(health)
        if reply.status_code != 200:
            raise BenchError(f"GET /health answered {reply.status_code}")
        return conn

    async def balance(conns: list[RawHttp]) -> None:
        spreads.append(workers.spread([c.client_port for c in conns]))
        if not rebalance:
            return
        quota = math.ceil(clients / workers.count)
        for _ in range(50 * clients):
            owners = workers.owners([c.client_port for c in conns])
            counts = Counter(owners)
            over = next((i for i, o in enumerate(owners) if o is None or counts[o] > quota), None)
            if over is None:
                break
            conns[over].close()
            conns[over] = await open_client()
        for conn in conns:  # fresh keep-alive timers
            await conn.request(health)
        spreads.append(workers.spread([c.client_port for c in conns]))

    async def client(conn: RawHttp) -> None:
        while (i := next(counter)) < n:
            started = time.perf_counter()
            reply = await conn.request(requests[i])
            latencies[i] = time.perf_counter() - started
            statuses[reply.status_code] += 1
            results[i] = keep(reply) if reply.is_success else reply.text

    async def main() -> float:
        conns = list(await asyncio.gather(*(open_client() for _ in range(clients))))
        try:
            if workers is not None:
                await balance(conns)
            if meter:
                meter.start()
            started = time.perf_counter()
            await asyncio.gather(*(client(conn) for conn in conns))
            wall = time.perf_counter() - started
            if meter:
                meter.stop()
            return wall
        finally:
            for conn in conns:
                conn.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        wall = runner.run(main())
    return Load(wall, latencies, statuses, results, meter, spreads=spreads)


def pool_load(engine: sa.Engine, n: int, clients: int, statement: sa.TextClause, params: Callable[[int], dict],
              *, write: bool, meter: CpuMeter | None = None) -> Load:
    """``n`` statements from ``clients`` threads over one pool, each its own transaction."""
    latencies: list[float] = [0.0] * n
    results: list[Any] = [None] * n
    statuses: Counter = Counter()
    counter, lock = itertools.count(), threading.Lock()
    opened, go = threading.Barrier(clients + 1), threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with engine.connect() as conn:  # each thread's connection checked out before the clock starts
                conn.execute(sa.text("SELECT 1"))
                conn.commit()
                opened.wait()
                go.wait()
                while True:
                    with lock:
                        i = next(counter)
                    if i >= n:
                        return
                    started = time.perf_counter()
                    result = conn.execute(statement, params(i))
                    row = None if write else result.first()
                    conn.commit()
                    latencies[i] = time.perf_counter() - started
                    results[i] = row
                    with lock:
                        statuses["ok" if write or row is not None else "missing"] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            opened.abort()
            go.set()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        opened.wait()
    if meter:
        meter.start()
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if meter:
        meter.stop()
    if errors:
        raise BenchError(f"the plain SQL load failed: {errors[0]!r}")
    return Load(wall, latencies, statuses, results, meter)


STATS_SETTLE_S = 11.0  # PostgreSQL ≥ 15: an idle backend reports its counters within 10 s


def transactions(engine: sa.Engine) -> int:
    """Transactions (committed + rolled back) of the application database so far, once every backend
    has reported its counters."""
    time.sleep(STATS_SETTLE_S)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                    "WHERE datname = current_database()")).scalar_one()


# ── the benchmark ────────────────────────────────────────────────────────────────────────────────
@dataclass
class Bench:
    args: argparse.Namespace
    engine: sa.Engine  # the baseline's pool (and our own reads)
    api: Service
    daemon: Service | None
    users: list[User]
    sse_user: User  # a user of its own: no backlog ahead of its job in the sensor's round-robin
    meter_groups: dict[str, Callable[[], list[int]]]
    sse_job: int = 0

    def meter(self) -> CpuMeter:
        return CpuMeter(dict(self.meter_groups), own_label="client (this process)")

    def workers(self) -> Workers:
        port = int(self.api.url.rsplit(":", 1)[1])
        return Workers(port, lambda: [p for p in self.api.pids() if p != self.api.process.pid], self.args.workers)

    def spread_line(self, loads: list[Load]) -> str:
        if self.args.no_balance:
            return ("   client connections per API worker (opened at once and used as they landed, --no-balance; "
                    "each run): " + ", ".join(" → ".join(l.spreads) for l in loads))
        return ("   client connections per API worker (opened at once → as used, each run): "
                + ", ".join(" → ".join(l.spreads) for l in loads))

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'pending'")).scalar_one()

    def counts(self) -> Counter:
        with self.engine.connect() as conn:
            return Counter(dict(conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY status")).all()))

    def taken(self) -> int:
        """Rows the sensor has moved on from pending."""
        return sum(n for status, n in self.counts().items() if status != "pending")

    def backlog(self) -> str:
        counts = self.counts()
        return f"{counts['pending']}+{counts['queued']}"

    def drain(self, timeout_s: float = 300) -> None:
        """With the daemon: wait until the sensor has made a run of every pending row."""
        if self.daemon is None:
            return

        def empty() -> bool:
            self.daemon.check("the Dagster daemon")
            return self.pending() == 0

        wait_for(empty, timeout_s, "the sensor to take the pending rows", poll_s=0.5)

    # 1 ─ submissions
    def submit_call(self, tag: str) -> Callable[[int], Call]:
        def call(i: int) -> Call:
            user = self.users[i % len(self.users)]
            return ("POST", "/api/v1/jobs", {"X-API-Key": user.key}, {"prompt": f"a red fox running in snow ({tag} {i})", **BODY})
        return call

    def insert_params(self, tag: str) -> Callable[[int], dict]:
        def params(i: int) -> dict:
            return {"user_id": self.users[i % len(self.users)].id, "prompt": f"a red fox running in snow ({tag} {i})",
                    **{k: str(v) for k, v in BODY.items()}}
        return params

    def api_submit(self, n: int, tag: str, meter: CpuMeter | None = None) -> Load:
        before = transactions(self.engine) if meter else 0
        load = http_load(self.api.url, n, self.args.clients, self.submit_call(tag),
                         keep=lambda r: r.json()["id"], meter=meter, workers=self.workers(),
                         rebalance=not self.args.no_balance)
        if meter:
            load.commits = transactions(self.engine) - before - 1  # our own read
        load.check(201, "POST /api/v1/jobs")
        return load

    def plain_insert(self, n: int, tag: str, meter: CpuMeter | None = None) -> Load:
        before = transactions(self.engine) if meter else 0
        load = pool_load(self.engine, n, self.args.clients, PLAIN_INSERT, self.insert_params(tag), write=True, meter=meter)
        if meter:
            load.commits = transactions(self.engine) - before - 1 - self.args.clients  # the threads' SELECT 1
        load.check("ok", "plain INSERT")
        return load

    def section_submit(self) -> tuple[list[str], list[tuple[int, User]]]:
        a = self.args
        self.api_submit(min(200, a.requests), "warm-up")  # uvicorn workers, pools, caches
        self.plain_insert(min(200, a.requests), "warm-up")
        api_runs, sql_runs, backlogs = [], [], []
        last_ids: list[int] = []
        for run in range(a.runs):
            backlogs.append(self.backlog())
            sql_runs.append(self.plain_insert(a.requests, f"insert run {run}", self.meter()))
            backlogs.append(self.backlog())
            load = self.api_submit(a.requests, f"api run {run}", self.meter())
            api_runs.append(load)
            last_ids = load.results
        owned = [(job_id, self.users[i % len(self.users)]) for i, job_id in enumerate(last_ids)]
        api_rate, sql_rate = median([r.rate for r in api_runs]), median([r.rate for r in sql_runs])
        ratio = api_rate / sql_rate
        met = ratio >= SUBMIT_TARGET_RATIO and api_rate >= SUBMIT_TARGET_RATE
        lines = [
            f"1. submissions/s, median of {a.runs} run(s) of {a.requests} from {a.clients} clients over {len(self.users)} users",
            (f"   POST /api/v1/jobs {api_rate:8.0f}/s   plain INSERT (pool, {a.clients} threads) {sql_rate:8.0f}/s   "
            f"ratio {ratio:6.1%}   target ≥ {SUBMIT_TARGET_RATIO:.0%} and ≥ {SUBMIT_TARGET_RATE:.0f}/s: "
            f"{'met' if met else 'NOT met'}"),
            (f"   each run: API {', '.join(f'{r.rate:.0f}' for r in api_runs)}/s; INSERT "
            f"{', '.join(f'{r.rate:.0f}' for r in sql_runs)}/s; jobs pending+queued before each run "
            f"(INSERT, API, …): {', '.join(backlogs)}"),
            (f"   request latency p50/p99: API {median([percentile(r.latencies_s, 50) for r in api_runs]) * 1e3:.1f}/"
            f"{median([percentile(r.latencies_s, 99) for r in api_runs]) * 1e3:.1f} ms; INSERT "
            f"{median([percentile(r.latencies_s, 50) for r in sql_runs]) * 1e3:.1f}/"
            f"{median([percentile(r.latencies_s, 99) for r in sql_runs]) * 1e3:.1f} ms"),
            (f"   PostgreSQL transactions per request (committed + rolled back in the application database, "
            f"the sensor's included): API "
            f"{median([r.commits / a.requests for r in api_runs]):.1f}, INSERT {median([r.commits / a.requests for r in sql_runs]):.1f}"),
            self.spread_line(api_runs),
            "   CPU ms per request, by process group (medians over runs; from /proc):",
        ]
        lines += self.cpu_lines([("API", api_runs), ("INSERT", sql_runs)], a.requests)
        return lines, owned

    def cpu_lines(self, phases: list[tuple[str, list[Load]]], n: int) -> list[str]:
        names = list(phases[0][1][0].cpu.used_s)
        out = []
        for label, loads in phases:
            parts = [f"{name} {median([l.cpu.used_s[name] for l in loads]) / n * 1e3:.2f}" for name in names]
            total = median([sum(l.cpu.used_s.values()) for l in loads]) / n * 1e3
            cores = median([l.cpu.busy_cores for l in loads])
            out.append(f"     {label:7} {'; '.join(parts)}; all {total:.2f} (machine busy {cores:.2f} of "
                       f"{os.cpu_count()} cores)")
        return out

    # 2 ─ reads
    def section_get(self, owned: list[tuple[int, User]]) -> list[str]:
        a = self.args
        rng = random.Random(9)
        picks = [rng.choice(owned) for _ in range(a.get_requests)]

        def call(i: int) -> Call:
            job_id, user = picks[i]
            return ("GET", f"/api/v1/jobs/{job_id}", {"X-API-Key": user.key}, None)

        api_runs, sql_runs = [], []
        for _ in range(a.runs):
            sql = pool_load(self.engine, a.get_requests, a.clients, PLAIN_SELECT, lambda i: {"id": picks[i][0]},
                            write=False, meter=self.meter())
            sql.check("ok", "plain SELECT")
            sql_runs.append(sql)
            load = http_load(self.api.url, a.get_requests, a.clients, call, meter=self.meter(),
                             workers=self.workers(), rebalance=not a.no_balance)
            load.check(200, "GET /api/v1/jobs/{id}")
            api_runs.append(load)

        def p(loads: list[Load], q: float) -> float:
            return median([percentile(l.latencies_s, q) for l in loads]) * 1e3

        return [
            (f"2. GET /api/v1/jobs/{{id}} latency, {a.get_requests} requests over {a.clients} clients "
            f"(medians of {a.runs} run(s))"),
            (f"   p50 {p(api_runs, 50):7.1f} ms   plain SELECT * … WHERE id (pool) p50 {p(sql_runs, 50):6.2f} ms   "
            f"ratio {p(api_runs, 50) / p(sql_runs, 50):6.1f}×"),
            (f"   p99 {p(api_runs, 99):7.1f} ms   plain SELECT * … WHERE id (pool) p99 {p(sql_runs, 99):6.2f} ms   "
            f"ratio {p(api_runs, 99) / p(sql_runs, 99):6.1f}×"),
            self.spread_line(api_runs),
            (f"   throughput: API {median([l.rate for l in api_runs]):.0f}/s, SELECT {median([l.rate for l in sql_runs]):.0f}/s; "
            "CPU ms per request:"),
            *self.cpu_lines([("API", api_runs), ("SELECT", sql_runs)], a.get_requests),
        ]

    # 3 ─ live progress
    def submit_sse_job(self) -> None:
        """Submitted first: the sensor has queued it by the time section 3 starts."""
        response = httpx.post(self.api.url + "/api/v1/jobs", headers={"X-API-Key": self.sse_user.key}, timeout=30,
                              json={"prompt": "a red fox running in snow (sse)", **BODY})
        if response.status_code != 201:
            raise BenchError(f"submitting the SSE job: {response.status_code} {response.text[:300]}")
        self.sse_job = response.json()["id"]

    def running_job(self) -> tuple[int, str, User]:
        from videogen.lifecycle import JobStore

        user, job_id = self.sse_user, self.sse_job
        store = JobStore(self.engine)
        if self.daemon is None:
            run_id = f"api-bench-{job_id}"
            store.queue.mark_queued({job_id: run_id})
        else:  # the run the sensor created for it (queued, never launched): reconciliation leaves it alone
            run_id = wait_for(lambda: store.reads.get(job_id)["run_id"], 600, "the sensor to queue the SSE job",
                              poll_s=0.5)
        if store.runs.claim(job_id, run_id) is None:
            raise BenchError(f"job {job_id} could not be claimed ({store.reads.get(job_id)['status']})")
        return job_id, run_id, user

    def section_sse(self) -> list[str]:
        from api.routes.jobs import STREAM_POLL_S
        from videogen.lifecycle import JobStore

        a = self.args
        store = JobStore(self.engine)
        job_id, run_id, user = self.running_job()
        sse_events: queue.Queue = queue.Queue()
        poll_events: queue.Queue = queue.Queue()
        stop = threading.Event()
        failures: list[BaseException] = []

        def sse_reader() -> None:
            try:
                with httpx.Client(base_url=self.api.url, timeout=httpx.Timeout(30, read=60)) as http, \
                        http.stream("GET", f"/api/v1/jobs/{job_id}/stream", headers={"X-API-Key": user.key}) as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            sse_events.put((time.monotonic(), json.loads(line[5:])))
            except BaseException as error:  # noqa: BLE001
                if not stop.is_set():
                    failures.append(error)
                    sse_events.put((time.monotonic(), None))

        def table_poller() -> None:
            last = None
            with self.engine.connect() as conn:
                while not stop.is_set():
                    row = conn.execute(PLAIN_SELECT, {"id": job_id}).mappings().first()
                    conn.commit()
                    snapshot = (row["status"], row["stage"], row["progress"])
                    if snapshot != last:
                        poll_events.put((time.monotonic(), {"progress": row["progress"], "status": row["status"]}))
                        last = snapshot
                    time.sleep(STREAM_POLL_S)

        def wait_event(events: queue.Queue, progress: float, timeout_s: float = 30) -> float:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    at, data = events.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    raise BenchError(f"no event with progress {progress} within {timeout_s:.0f} s") from None
                if data is None:
                    raise BenchError(f"the SSE stream broke: {failures[0]!r}")
                if data.get("progress") == progress:
                    return at

        reader = threading.Thread(target=sse_reader, daemon=True)
        poller = threading.Thread(target=table_poller, daemon=True)
        reader.start()
        poller.start()
        sse_delays, poll_delays = [], []
        rng = random.Random(3)
        try:
            wait_event(sse_events, 0.0)  # the stream's first event: the claimed job, progress 0
            wait_event(poll_events, 0.0)
            for k in range(a.sse_samples):
                time.sleep(rng.uniform(0.1, 0.6))  # a random phase of the stream's poll loop
                progress = round((k + 1) / (a.sse_samples + 1), 6)
                store.runs.heartbeat(job_id, run_id)  # keeps the reconciliation sensor's hands off
                store.runs.set_progress(job_id, stage="generate", progress=progress)
                committed = time.monotonic()
                sse_delays.append(wait_event(sse_events, progress) - committed)
                poll_delays.append(wait_event(poll_events, progress) - committed)
        finally:
            stop.set()
            store.runs.fail(job_id, code="benchmark_done", message="the API benchmark's SSE job", run_id=run_id)
            reader.join(timeout=10)
            poller.join(timeout=10)
        p50, p99 = percentile(sse_delays, 50), percentile(sse_delays, 99)
        return [
            f"3. committed progress change → SSE event received, {a.sse_samples} samples",
            (f"   p50 {p50 * 1e3:7.0f} ms   p99 {percentile(sse_delays, 99) * 1e3:6.0f} ms   "
            f"(max {max(sse_delays) * 1e3:.0f} ms)   target p50 ≤ {SSE_TARGET_P50_S:.0f} s: "
            f"{'met' if p50 <= SSE_TARGET_P50_S else 'NOT met'}"),
            (f"   baseline, a thread polling SELECT * … WHERE id every {STREAM_POLL_S} s (the stream's own "
            f"interval): p50 {percentile(poll_delays, 50) * 1e3:.0f} ms, p99 {percentile(poll_delays, 99) * 1e3:.0f} ms; "
            f"SSE − poll p50 {(p50 - percentile(poll_delays, 50)) * 1e3:+.0f} ms, p99 {(p99 - percentile(poll_delays, 99)) * 1e3:+.0f} ms"),
        ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="submissions per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement; medians (default 3)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--users", type=int, default=50, help="accounts the requests are spread over (default 50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="serve-api --workers (default: os.cpu_count())")
    parser.add_argument("--get-requests", type=int, default=1000, help="GET requests per run (default 1000)")
    parser.add_argument("--sse-samples", type=int, default=50, help="progress changes timed (default 50)")
    parser.add_argument("--no-daemon", action="store_true", help="do not run the Dagster daemon (sensor)")
    parser.add_argument("--no-balance", action="store_true",
                        help="use the client connections wherever they landed (by default those on a worker "
                             "holding more than clients/workers are reopened until the workers hold one share each)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="copy the services' logs (serve-api, Dagster daemon) into this folder at the end")
    parser.add_argument("--small", action="store_true",
                        help="a quick check: 200 requests, 1 run, 200 GETs, 10 SSE samples")
    args = parser.parse_args()
    if args.small:
        args.requests, args.runs, args.get_requests, args.sse_samples = 200, 1, 200, 10
    return args


def main() -> int:
    args = parse_args()
    daemon_line = ("Dagster daemon NOT running (--no-daemon): no sensor load" if args.no_daemon else
                   "Dagster daemon running (pending-jobs + reconciliation sensors live; run queue paused with "
                   "max_concurrent_runs: 0, so no run is launched and nothing generates)")
    print(f"videogen API benchmark — {os.cpu_count()} CPUs; serve-api --workers {args.workers}; {daemon_line}; "
          f"{args.clients} clients (raw HTTP/1.1 keep-alive over uvloop), {args.users} users, rate limit and active-jobs "
          f"cap {LIMIT_ABOVE_LOAD}; each figure next to its baseline from this run", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="videogen-api-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        pg = stack.enter_context(postgres(work))
        app_url = create_database(pg.admin_url, migrate=True)
        engine = sa.create_engine(app_url, pool_size=args.clients, max_overflow=5)
        stack.callback(engine.dispose)
        per_user = math.ceil((args.runs + 1) * args.requests * 2 / args.users) + 10
        users = make_users(engine, args.users + 1, str(per_user))  # a tiny job costs 0.1475: far more than enough
        daemon = None if args.no_daemon else stack.enter_context(dagster_daemon(pg, app_url, work))
        api = stack.enter_context(api_server(app_url, work, args.workers))
        groups = {"API": api.pids, "PostgreSQL": pg.pids}
        if daemon is not None:
            groups["daemon"] = daemon.pids
        bench = Bench(args, engine, api, daemon, users[:-1], users[-1], groups)
        if daemon is not None:  # the sensor is live: a first row becomes queued
            with engine.begin() as conn:
                conn.execute(PLAIN_INSERT, bench.insert_params("daemon check")(0))
            bench.drain(timeout_s=300)
            print(f"   (daemon and sensor up after {time.monotonic() - started:.0f} s; from now on the sensor works "
                  "through the rows as they come, never waited for)", flush=True)
        sensor_from, taken_from = time.monotonic(), bench.taken()
        bench.submit_sse_job()
        failures = 0
        owned: list[tuple[int, User]] = []
        for name in ("submit", "get", "sse"):
            began = time.monotonic()
            try:
                if name == "submit":
                    lines, owned = bench.section_submit()
                elif name == "get":
                    if not owned:
                        raise BenchError("no submitted jobs to read")
                    lines = bench.section_get(owned)
                else:
                    lines = bench.section_sse()
            except BenchError as error:
                failures += 1
                lines = [f"{name}: FAILED: {error}"]
            for line in lines:
                print(line, flush=True)
            print(f"   ({name}: {time.monotonic() - began:.0f} s)", flush=True)
        if daemon is not None:
            taken, counts = bench.taken() - taken_from, bench.counts()
            print(f"sensor: {taken} rows turned into queued runs in {time.monotonic() - sensor_from:.0f} s "
                  f"({taken / (time.monotonic() - sensor_from):.1f} rows/s; VIDEOGEN_SENSOR_BATCH_SIZE "
                  f"{os.environ.get('VIDEOGEN_SENSOR_BATCH_SIZE') or '200'}); still pending at the end: "
                  f"{counts['pending']} of {sum(counts.values())} rows", flush=True)
        print(f"total {time.monotonic() - started:.0f} s", flush=True)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            stack.callback(lambda: [shutil.copy(log, args.logs) for log in work.glob("*.log")])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
