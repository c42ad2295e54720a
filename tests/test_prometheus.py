"""A real Prometheus scraping a real API (issue 11): Prometheus's own HTTP API is the reader.

One ``videogen serve-api`` over a fresh database and one ``prometheus`` process (Debian's package;
scripts/bootstrap.sh installs it; a missing binary fails this module, it never skips) scraping the API's
``/metrics`` every second under the job name the alert rules use (``videogen-api``), and the session's
Serve app (the ``serve_app`` fixture: ``videogen serve-models``, one CPU replica) under
``videogen-generation``, in which generations of the three tiny models run (model loads, denoising
steps), with a copy of
k8s/monitoring/rules.yaml evaluated every second, whose ``for:`` durations only are shortened (same
expressions, asserted). Real traffic goes through the API (submissions, a 404, a readiness 503), and
rows in every status are written into ``jobs``. Then:

- the ``videogen_jobs`` series (and the failed-by-code, GPU-seconds and bucket-bytes series) that
  Prometheus scraped equal the ``jobs`` table;
- every rule of rules.yaml evaluates without error inside Prometheus;
- WorkerQueueBacklog goes pending, then firing, under an injected backlog, and inactive once it drains;
- every PromQL expression of every panel of k8s/monitoring/dashboards/*.json evaluates without error
  and returns data (at least one sample that is a number, not NaN);
- ``GET /metrics`` answers in < 100 ms (median) over a 10,000-row ``jobs`` table.

The platform collector caches its snapshot for 5 s and Prometheus scrapes every 1 s, so every check
waits (with a deadline) for a condition, never a fixed time.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from api.app import known_revisions
from tests.api.conftest import Account, ApiServer, make_account, start_api
from tests.api.test_jobs_api import TINY
from tests.conftest import create_database, free_port
from tests.serving.test_serving import TINY as SERVE_TINY
from tests.waiting import wait_until
from videogen.db.schema import job_events, jobs
from videogen.devtools.processes import start_in_new_session, stop_session
from videogen.generation.remote import RemoteGenerator
from videogen.kpi.tables import TABLES as KPI_TABLES

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "k8s" / "monitoring"
RULES = MONITORING / "rules.yaml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
JOB = "videogen-api"  # the job label of the API's targets: APIDown reads up{job="videogen-api"}
GENERATION_JOB = "videogen-generation"  # the Serve replica's GET /metrics (the PodMonitor's job in Kubernetes)
# Every alert's `for:` in the copy Prometheus loads. The real ones (2m to 30m) cannot be waited out in
# a test of about a minute; 5 s is long enough to see the alert pending (rules are evaluated every
# second here) before it fires. Only `for:` changes: the expressions are asserted equal to rules.yaml's.
TEST_FOR = "5s"
# Grafana's variables, should a panel use them, replaced by what Grafana would put there.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Dashboard expressions that cannot return data in this setup, with the reason; keep it as short as
# possible. Every other metric the dashboards read is exported by the API, the platform collector or
# the Serve replica scraped here.
CPU_REPLICA = "the test's Serve replica runs on the CPU: the GPU memory gauges exist only on a replica that initialized CUDA"
NO_DATA_HERE: dict[str, str] = {
    "max by (instance, device) (videogen_generation_gpu_memory_bytes)": CPU_REPLICA,
    "max by (instance, device) (videogen_generation_gpu_memory_peak_bytes)": CPU_REPLICA,
}
# The stated requirement: GET /metrics answers in under 100 ms with 10,000 rows in jobs (cached collector).
METRICS_BUDGET_S = 0.100


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Stack:
    api: ApiServer
    prometheus: str  # Prometheus's base URL
    prometheus_log: Path
    serve: str  # the Serve app's base URL

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector's samples); AssertionError with Prometheus's error."""
        response = httpx.get(self.prometheus + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr!r}: {body}"
        assert body["data"]["resultType"] in ("vector", "scalar"), f"{expr!r}: {body['data']['resultType']}"
        result = body["data"]["result"]
        # A scalar (time() - …) comes back as [ts, "value"]: one sample without labels.
        return [{"metric": {}, "value": result}] if body["data"]["resultType"] == "scalar" else result

    def api_get(self, path: str) -> dict[str, Any]:
        response = httpx.get(self.prometheus + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def rules(self) -> dict[str, dict[str, Any]]:
        return {rule["name"]: rule for group in self.api_get("/api/v1/rules")["groups"] for rule in group["rules"]}

    def alert_states(self, name: str) -> set[str]:
        return {alert["state"] for alert in self.api_get("/api/v1/alerts")["alerts"] if alert["labels"]["alertname"] == name}


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("`prometheus` is not installed: it comes with Debian's `prometheus` package "
                    "(scripts/bootstrap.sh installs it; apt-get install prometheus)")
    return path


def shortened_rules(directory: Path) -> Path:
    """A copy of rules.yaml with every alert's ``for:`` set to TEST_FOR, nothing else changed."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = TEST_FOR
    copy = directory / "rules.yaml"
    copy.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return copy


def rule_exprs(path: Path) -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def stack(admin_url: str, serve_app: dict[str, Any], tmp_path_factory) -> Iterator[Stack]:
    binary = prometheus_binary()
    work = tmp_path_factory.mktemp("prometheus")
    database_url = create_database(admin_url)
    secret = secrets.token_hex(32)
    api_process, api_url, api_log = start_api(database_url, work / "api", jwt_secret=secret)
    engine = sa.create_engine(database_url)
    prometheus_process = None
    try:
        rules = shortened_rules(work)
        assert rule_exprs(rules) == rule_exprs(RULES)  # same rules, same expressions, in the same order
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                "static_configs": [{"targets": [api_url.removeprefix("http://")]}]},
                               # A scrape while the replica generates waits for its one request slot and
                               # times out (up 0 for that second); the ones between generations answer.
                               {"job_name": GENERATION_JOB, "metrics_path": "/metrics",
                                "static_configs": [{"targets": [serve_app["url"].removeprefix("http://")]}]}],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = work / "prometheus.log"
        with open(log, "wb") as out:
            prometheus_process = start_in_new_session(
                [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], log=out, cwd=work)
        stack = Stack(ApiServer(api_url, database_url, engine, secret, api_log, work / "api"),
                      f"http://127.0.0.1:{port}", log, serve_app["url"])

        def ready() -> bool:
            if prometheus_process.poll() is not None:
                raise AssertionError(f"prometheus exited with {prometheus_process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(stack.prometheus + "/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "Prometheus to be ready", poll_s=0.2)
        wait_until(lambda: stack.query(f'up{{job="{JOB}"}} == 1'), 30, "Prometheus to scrape the API", poll_s=0.2)
        wait_until(lambda: stack.query(f'videogen_generation_requests_in_flight{{job="{GENERATION_JOB}"}}'), 30,
                   "Prometheus to scrape the Serve replica", poll_s=0.2)
        yield stack
    finally:
        if prometheus_process is not None:
            stop_session(prometheus_process, grace_s=20)
        stop_session(api_process, grace_s=20)
        engine.dispose()


# --- traffic ----------------------------------------------------------------------------------------


def insert_jobs(engine: sa.Engine, rows: list[dict[str, Any]]) -> list[int]:
    """The rows, and for the succeeded ones the audit trail of a run (the stage-time histogram's source)."""
    with engine.begin() as conn:
        ids = [conn.execute(jobs.insert().values(user_id="prometheus-test", prompt="a lighthouse at dusk", **row)
                            .returning(jobs.c.id)).scalar_one() for row in rows]
        start = datetime.now(UTC)
        trail = [{"job_id": job_id, "status": "running", "stage": stage, "created_at": start + timedelta(seconds=at)}
                 for job_id, row in zip(ids, rows) if row.get("status") == "succeeded"
                 for stage, at in (("generate", 0.0), ("encode", 1.5), ("upload", 1.8), ("done", 2.1))]
        if trail:
            conn.execute(job_events.insert(), trail)
    return ids


def finished_rows(n: int) -> list[dict[str, Any]]:
    """Rows in every final status, so that the counters and the histogram move."""
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        model = ("tiny", "tiny-b")[i % 2]
        rows.append({"status": "succeeded", "model": model, "gpu_seconds": 1.5 + 20 * i, "credits": 0.25,
                     "started_at": now, "finished_at": now, "output_uri": f"s3://videos/{i}.mp4",
                     "output_size_bytes": 1_000_000 + i})
        rows.append({"status": "failed", "model": model, "gpu_seconds": 0.5, "finished_at": now,
                     "error_code": ("GPU_OOM", "ENCODE_FAILED")[i % 2], "error_message": "test"})
    rows += [{"status": "canceled", "model": "tiny"}, {"status": "rejected", "model": "tiny-b", "error_code": "INVALID"}]
    return rows


def http_traffic(stack: Stack, accounts: list[Account], *, submissions: int) -> None:
    """Requests in every status class: submissions (2xx), a missing job (4xx), readiness while the schema
    is behind (503: alembic_version set back one migration for the time of one request)."""
    for account in accounts:
        with stack.api.client(**account.headers) as http:
            for _ in range(submissions):
                response = http.post("/api/v1/jobs", json=TINY)
                assert response.status_code == 201, response.text
                assert http.get(f"/api/v1/jobs/{response.json()['id']}").status_code == 200
            assert http.get("/api/v1/jobs/999999999").status_code == 404
    head, known = known_revisions()
    behind = max(known - {head})
    with stack.api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": behind})
    try:
        assert httpx.get(stack.api.url + "/ready", timeout=10).status_code == 503
    finally:
        with stack.api.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert httpx.get(stack.api.url + "/ready", timeout=10).status_code == 200


def generation_traffic(stack: Stack) -> None:
    """Generations through the Serve app's HTTP API (POST /generate, as the Dagster op makes them): the
    three tiny models in turn on a replica that keeps two, so at least one model is loaded while
    Prometheus watches; then wait until Prometheus scraped the replica's counters after them."""
    generator = RemoteGenerator(stack.serve)
    for model in ("tiny", "tiny-b", "tiny-c"):
        generator.generate(model, SERVE_TINY)

    def replica_totals() -> tuple[float, float]:
        text = httpx.get(stack.serve + "/metrics", timeout=60).text
        return tuple(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
                     for name in ("videogen_generation_denoising_steps_total", "videogen_generation_model_loads_total"))

    def scraped() -> tuple[float, ...]:
        return tuple(sum(float(s["value"][1]) for s in stack.query(f'{name}{{job="{GENERATION_JOB}"}}'))
                     for name in ("videogen_generation_denoising_steps_total", "videogen_generation_model_loads_total"))

    expected = replica_totals()
    wait_until(lambda: scraped() == expected, 30, "Prometheus to scrape the replica after the generations", poll_s=0.25)


def table_counts(engine: sa.Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        return {(row.status, row.model): row.n for row in conn.execute(
            sa.select(jobs.c.status, jobs.c.model, sa.func.count().label("n")).group_by(jobs.c.status, jobs.c.model))}


def scraped_counts(stack: Stack) -> dict[tuple[str, str], int]:
    # max over replicas, as the rules read it (one replica here)
    return {(s["metric"]["status"], s["metric"]["model"]): int(float(s["value"][1]))
            for s in stack.query("max by (status, model) (videogen_jobs)")}


def wait_scraped(stack: Stack, what: str) -> None:
    """Until Prometheus holds the jobs table's current counts (collector cache 5 s + one scrape)."""
    wait_until(lambda: scraped_counts(stack) == table_counts(stack.api.engine), 30,
               f"Prometheus's videogen_jobs to equal the jobs table ({what})", poll_s=0.25)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Stack:
    """Two rounds of traffic, each waited for in Prometheus: the first creates every series, the second
    moves them, so that rate(), increase() and delta() over them have something to measure."""
    engine = stack.api.engine
    accounts = [make_account(stack.api), make_account(stack.api)]
    now = datetime.now(UTC)
    http_traffic(stack, accounts, submissions=2)
    insert_jobs(engine, finished_rows(3) + [
        {"status": "running", "model": "tiny", "started_at": now, "heartbeat_at": now, "attempts": 1, "run_id": "r1"},
        {"status": "queued", "model": "tiny-b", "queued_at": now, "run_id": "r2"},
        {"status": "pending", "model": "tiny-b"},
    ])
    with engine.begin() as conn:
        for table in KPI_TABLES.values():  # today's rows: not a past day the reconciliation rule reads
            values = {c.name: 0 for c in table.columns if not c.nullable}
            values.update(job_date=now.date(), computed_at=now)
            if "model" in values:
                values["model"] = "tiny"
            conn.execute(table.insert().values(**values))
    wait_scraped(stack, "first round")
    generation_traffic(stack)
    http_traffic(stack, accounts, submissions=1)
    insert_jobs(engine, finished_rows(2))
    wait_scraped(stack, "second round")
    return stack


# --- the checks ----------------------------------------------------------------------------------------


def test_job_series_equal_the_jobs_table(traffic: Stack):
    engine = traffic.api.engine
    wait_scraped(traffic, "now")
    counts = table_counts(engine)
    assert {status for status, _ in counts} == {"pending", "queued", "running", "succeeded", "failed", "canceled",
                                                 "rejected"}
    by_status = {s["metric"]["status"]: int(float(s["value"][1]))
                 for s in traffic.query("sum by (status) (max by (status, model) (videogen_jobs))")}
    expected = {}
    for (status, _), n in counts.items():
        expected[status] = expected.get(status, 0) + n
    assert by_status == expected
    with engine.connect() as conn:
        failed = dict(conn.execute(sa.select(jobs.c.error_code, sa.func.count()).where(jobs.c.status == "failed")
                                   .group_by(jobs.c.error_code)).all())
        gpu = conn.execute(sa.select(sa.func.sum(jobs.c.gpu_seconds))).scalar_one()
        bucket = conn.execute(sa.select(sa.func.sum(jobs.c.output_size_bytes))
                              .where(jobs.c.output_uri.is_not(None))).scalar_one()
    assert {s["metric"]["error_code"]: int(float(s["value"][1]))
            for s in traffic.query("max by (error_code) (videogen_jobs_failed)")} == failed
    assert float(traffic.query("max(videogen_gpu_seconds_total)")[0]["value"][1]) == pytest.approx(gpu)
    assert float(traffic.query("max(videogen_bucket_used_bytes)")[0]["value"][1]) == bucket


def test_every_rule_evaluates_without_error(traffic: Stack):
    expected = [name for name, _ in rule_exprs(RULES)]

    def evaluated() -> dict[str, dict[str, Any]]:
        rules = traffic.rules()  # a rule not evaluated yet has lastEvaluation 0001-01-01T00:00:00Z
        done = all(name in rules and not rules[name]["lastEvaluation"].startswith("0001-") for name in expected)
        return rules if done else {}

    rules = wait_until(evaluated, 20, "Prometheus to evaluate every rule", poll_s=0.25)
    assert sorted(rules) == sorted(expected)
    assert {name: (rule["health"], rule.get("lastError"))
            for name, rule in rules.items() if rule["health"] != "ok"} == {}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr with Grafana's variables replaced) of every panel target."""
    found = []

    def walk(name: str, panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(name, panel.get("panels", []))  # panels inside a row
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"{name} / {panel['title']}: a Grafana variable this test does not know: {expr}"
                found.append((name, panel["title"], expr))

    for path in DASHBOARDS:
        walk(path.name, json.loads(path.read_text())["panels"])
    return found


def test_every_dashboard_expression_returns_data(traffic: Stack):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20 and len(DASHBOARDS) == 4
    assert set(NO_DATA_HERE) <= {expr for _, _, expr in exprs}, "NO_DATA_HERE names an expression no panel has"
    without_data = {}
    for dashboard, title, expr in exprs:
        if expr in NO_DATA_HERE:
            continue
        result = traffic.query(expr)  # fails on an evaluation error
        values = [float(sample["value"][1]) for sample in result]
        if not any(not math.isnan(v) for v in values):
            without_data[f"{dashboard} / {title}: {expr}"] = values
    assert without_data == {}, "panels without data (empty, or only NaN)"


def test_queue_backlog_alert_goes_pending_then_firing_and_inactive_when_it_drains(traffic: Stack):
    engine = traffic.api.engine
    name = "WorkerQueueBacklog"
    waiting = sum(n for (status, _), n in table_counts(engine).items() if status in ("pending", "queued"))
    assert waiting <= 20 and traffic.alert_states(name) == set()
    backlog = insert_jobs(engine, [{"status": "pending", "model": ("tiny", "tiny-b")[i % 2]}
                                   for i in range(21 - waiting + 4)])
    seen = []

    def state(wanted: str):
        def check() -> bool:
            states = traffic.alert_states(name)  # one series (a sum): one state at most
            for observed in states:
                if not seen or seen[-1] != observed:
                    seen.append(observed)
            return wanted in states
        return check

    wait_until(state("pending"), 30, f"{name} to go pending", poll_s=0.1)
    wait_until(state("firing"), 30, f"{name} to fire ({TEST_FOR} after pending)", poll_s=0.1)
    assert seen == ["pending", "firing"]
    firing = [a for a in traffic.api_get("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]
    assert float(firing[0]["value"]) == waiting + len(backlog) and firing[0]["labels"]["severity"] == "warning"

    with engine.begin() as conn:  # the workers catch up: every injected job finishes
        conn.execute(jobs.update().where(jobs.c.id.in_(backlog)).values(status="succeeded", gpu_seconds=2.0))
    wait_until(lambda: traffic.alert_states(name) == set() and traffic.rules()[name]["state"] == "inactive", 30,
               f"{name} to become inactive once the backlog drained", poll_s=0.25)


def test_metrics_endpoint_answers_in_under_100_ms_over_10000_jobs(traffic: Stack):
    engine = traffic.api.engine
    with engine.begin() as conn:  # one statement: 10,000 finished jobs over two models and four statuses
        conn.execute(sa.text("""
            INSERT INTO jobs (user_id, prompt, model, status, gpu_seconds, credits, output_uri, output_size_bytes,
                              error_code, created_at, started_at, finished_at)
            SELECT 'bulk-' || (g % 97), 'bulk prompt ' || g, (ARRAY['tiny', 'tiny-b'])[1 + g % 2],
                   (ARRAY['succeeded', 'succeeded', 'succeeded', 'failed', 'canceled'])[1 + g % 5],
                   CASE WHEN g % 5 < 4 THEN 1 + (g % 600) END, CASE WHEN g % 5 < 3 THEN 0.1475 END,
                   CASE WHEN g % 5 < 3 THEN 's3://videos/bulk/' || g || '.mp4' END,
                   CASE WHEN g % 5 < 3 THEN 500000 + g END, CASE WHEN g % 5 = 3 THEN 'GPU_OOM' END,
                   now() - make_interval(secs => g * 60), now() - make_interval(secs => g * 60 - 5),
                   now() - make_interval(secs => g * 60 - 30)
            FROM generate_series(1, 10000) g"""))
        total = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
    assert total >= 10_000

    with httpx.Client(base_url=traffic.api.url, timeout=10) as http:
        def shows_every_row() -> bool:  # the cache refreshed over the 10,000 rows (warms the collector too)
            text = http.get("/metrics").text
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("videogen_jobs{")) == total

        wait_until(shows_every_row, 30, "/metrics to count the 10,000 rows", poll_s=0.25)
        durations = []
        for _ in range(15):  # keep-alive connection, as Prometheus scrapes: the server's time to answer
            started = time.perf_counter()
            response = http.get("/metrics")
            durations.append(time.perf_counter() - started)
            assert response.status_code == 200
        refresh_s = next(float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
                         if line.startswith("videogen_platform_metrics_query_seconds "))
    median = statistics.median(durations)
    print(f"\nGET /metrics over {total} jobs: median {median * 1000:.1f} ms, max {max(durations) * 1000:.1f} ms "
          f"of {len(durations)}; the collector's uncached refresh took {refresh_s * 1000:.1f} ms", file=sys.stderr)
    # Requirement (issue 11): < 100 ms. Measured here at a few ms (see the line above): a wide margin, so
    # a failure means the cache is not serving scrapes, not a slow machine.
    assert median < METRICS_BUDGET_S, f"median {median * 1000:.1f} ms over {durations}"
    # A refresh must also fit well inside the 1 s scrape timeout used here (Prometheus's default is 10 s).
    assert refresh_s < 0.5
    wait_scraped(traffic, "10,000 rows")  # Prometheus reads them too
