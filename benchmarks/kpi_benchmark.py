"""Benchmark: daily KPIs with Spark (local mode) against one PostgreSQL query, and a 365-day backfill.

    .venv/bin/python benchmarks/kpi_benchmark.py            # starts its own PostgreSQL
    DATABASE_URL=postgresql://... .venv/bin/python benchmarks/kpi_benchmark.py --keep-data

Scenarios (medians of ``--repeat`` runs; every Spark run is a fresh process, so the session start is
paid every time, as a Dagster step pays it):

- one day with 10,000 jobs and one day with 1,000,000 jobs: Spark (``kpi_spark_daily``, the
  production path: session start, JDBC read planned and pushed down, one aggregation, DELETE+INSERT)
  against :data:`videogen.kpi.reference.DAILY_KPI_SQL` run by PostgreSQL alone;
- a 365-day backfill (~10,000 jobs a day) of both tables through Dagster exactly as a single-run
  backfill launches it (one run tagged with the partition range), checks included: wall time and the
  number of Spark sessions started.

Data is generated in PostgreSQL with ``INSERT ... SELECT generate_series`` into a database of its
own (``kpi_benchmark``, recreated on each run unless ``--keep-data``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from videogen.kpi.dates import DayRange  # noqa: E402

SMALL_DAY = date(2026, 2, 1)
BIG_DAY = date(2026, 2, 2)
BACKFILL = DayRange(date(2025, 1, 1), date(2025, 12, 31))
BENCH_DB = "kpi_benchmark"

# Seven in twelve succeeded, then one each of failed, rejected, canceled, running, pending.
_GENERATE = """
INSERT INTO jobs (user_id, prompt, model, status, created_at, queued_at, started_at, finished_at,
                  gpu_seconds, credits)
SELECT 'user_' || floor(random() * :users)::int,
       'benchmark prompt',
       (ARRAY['tiny', 'ltx-video', 'wan-2.1'])[1 + floor(random() * 3)::int],
       s.status,
       c.created_at,
       c.created_at + interval '1 second',
       CASE WHEN s.status IN ('succeeded', 'failed', 'running')
            THEN c.created_at + make_interval(secs => 1 + random() * 30) END,
       CASE WHEN s.status IN ('succeeded', 'failed')
            THEN c.created_at + make_interval(secs => 40 + random() * 600) END,
       CASE WHEN s.status IN ('succeeded', 'failed') THEN random() * 500 END,
       CASE WHEN s.status = 'succeeded' THEN round((random() * 10)::numeric, 4) END
FROM generate_series(0, :total - 1) AS g
CROSS JOIN LATERAL (
    SELECT CAST(:first_day AS timestamptz)
           + make_interval(days => (g / :per_day)::int, secs => ((g % :per_day) * 86400.0 / :per_day)::float8)
           AS created_at
) AS c
CROSS JOIN LATERAL (
    SELECT (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                  'succeeded', 'failed', 'rejected', 'canceled', 'running', 'pending'])
           [1 + floor(random() * 12 + g * 0)::int] AS status
) AS s
"""
_INDEXES = {
    "jobs_pending_idx": "CREATE INDEX jobs_pending_idx ON jobs (id) WHERE status = 'pending'",
    "jobs_status_idx": "CREATE INDEX jobs_status_idx ON jobs (status)",
    "jobs_created_at_idx": "CREATE INDEX jobs_created_at_idx ON jobs (created_at)",
    "jobs_user_created_idx": "CREATE INDEX jobs_user_created_idx ON jobs (user_id, created_at)",
}


# ------------------------------------------------------------------------------------------- setup


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare_database(server_url: str, keep: bool) -> str:
    from videogen.db.migrate import upgrade

    admin = sa.create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": BENCH_DB}).first()
        if exists and not keep:
            conn.execute(sa.text(f'DROP DATABASE "{BENCH_DB}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DB}"'))
    admin.dispose()
    url = make_url(server_url).set(database=BENCH_DB).render_as_string(hide_password=False)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        loaded = conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one()
    if loaded == 0:
        _load(engine)
    engine.dispose()
    return url


def _load(engine: sa.Engine) -> None:
    blocks = [
        ("10,000 jobs on one day", SMALL_DAY, 10_000, 10_000, 500),
        ("1,000,000 jobs on one day", BIG_DAY, 1_000_000, 1_000_000, 20_000),
        (f"365 days x 10,000 jobs ({BACKFILL})", BACKFILL.first, 10_000 * len(BACKFILL), 10_000, 2_000),
    ]
    with engine.begin() as conn:  # indexes are rebuilt once after the load, much faster than per row
        for name in _INDEXES:
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    for label, first_day, total, per_day, users in blocks:
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                sa.text(_GENERATE),
                {"users": users, "total": total, "per_day": per_day, "first_day": f"{first_day}T00:00:00+00:00"},
            )
        print(f"  generated {label} in {time.perf_counter() - started:.1f} s", flush=True)
    with engine.begin() as conn:
        for ddl in _INDEXES.values():
            conn.execute(sa.text(ddl))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE jobs"))


# ------------------------------------------------------------------------------------------ workers


def _worker_spark_day(url: str, day: str) -> dict:
    """One fresh process = one Dagster step: session start, then the production path."""
    from videogen.kpi.config import JdbcSource, SparkConfig
    from videogen.kpi.pipeline import run_kpis
    from videogen.kpi.quality import validate_rows
    from videogen.kpi.session import build_spark_session
    from videogen.kpi.source import read_jobs
    from videogen.kpi.tables import KPI_DAILY

    started = time.perf_counter()
    spark = build_spark_session(SparkConfig.from_env())
    session_s = time.perf_counter() - started
    engine = sa.create_engine(url)
    days = DayRange.parse(day)
    source = JdbcSource.from_sqlalchemy_url(url)
    run = run_kpis(spark, engine, source, days, tables=[KPI_DAILY], validate_before_write=False)
    committed_s = time.perf_counter() - started
    # Extras, after the measured path (so they do not warm it up): the GX gate the asset runs before
    # writing, and a scan-only re-read to split the read from the aggregation.
    gate_started = time.perf_counter()
    validate_rows(KPI_DAILY, run.tables[KPI_DAILY].rows, days)
    gate_s = time.perf_counter() - gate_started
    scan_started = time.perf_counter()
    read_jobs(spark, source, engine, days).frame.write.format("noop").mode("overwrite").save()
    scan_s = time.perf_counter() - scan_started
    spark.stop()
    return {
        "session_s": session_s,
        "plan_read_s": run.timings_s["plan_read"],
        "read_and_compute_s": run.timings_s["read_and_compute"],
        "scan_only_s": scan_s,
        "write_s": run.timings_s["write"],
        "wall_s": committed_s,
        "gx_gate_s": gate_s,
        "rows": run.rows_in_range,
        "jdbc_partitions": run.jdbc_partitions,
    }


def _worker_backfill(url: str, first: str, last: str) -> dict:
    """The single-run backfill of a range, as the Dagster daemon launches it (checks included)."""
    import warnings

    import dagster as dg

    from assets.kpi import kpi_spark_daily_by_model_checks, kpi_spark_daily_checks, kpi_spark_tables
    from resources.database import PostgresResource
    from resources.spark import SparkSessionResource
    from videogen.kpi import session as kpi_session

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [kpi_spark_tables, kpi_spark_daily_checks, kpi_spark_daily_by_model_checks],
            resources={"spark": SparkSessionResource(), "postgres": PostgresResource(database_url=url)},
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            instance=instance,
        )
        wall = time.perf_counter() - started
        runs = len(instance.get_run_records())
    materialization = result.get_asset_materialization_events()[0].materialization
    evaluations = result.get_asset_check_evaluations()
    step_s = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    }
    return {
        "wall_s": wall,
        "success": result.success,
        "dagster_runs": runs,
        "spark_sessions_started": kpi_session.sessions_started,
        "jobs_read": materialization.metadata["jobs_read"].value,
        "timings_s": materialization.metadata["timings_s"].value,
        "asset_step_s": step_s.get("kpi_spark_tables"),
        "check_steps_s": sum(v for k, v in step_s.items() if k != "kpi_spark_tables"),
        "check_evaluations": len(evaluations),
        "checks_passed": sum(e.passed for e in evaluations),
    }


def _run_worker(name: str, *args: str) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, *args], capture_output=True, text=True, cwd=REPO
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def _sql_day(url: str, days: DayRange, repeat: int) -> list[float]:
    from videogen.kpi.reference import daily_kpis_sql

    engine = sa.create_engine(url)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        daily_kpis_sql(engine, days)
        times.append(time.perf_counter() - started)
    engine.dispose()
    return times


# ------------------------------------------------------------------------------------------- report


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _day_table(url: str, repeat: int) -> list[str]:
    lines = [
        "| jobs in the day | Spark wall (session → committed) | session start | read plan | read + aggregate "
        "| of which scan only | write | PostgreSQL one query | Spark / SQL | + GX gate | process wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for day in (SMALL_DAY, BIG_DAY):
        runs = []
        for i in range(repeat):
            runs.append(_run_worker("spark-day", url, str(day)))
            print(f"  spark {day} run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f} s", flush=True)
        sql = _sql_day(url, DayRange.single(day), max(repeat, 5))
        sql_median = statistics.median(sql)
        wall = _median(runs, "wall_s")
        lines.append(
            f"| {runs[0]['rows']:,} | {wall:.2f} s | {_median(runs, 'session_s'):.2f} s "
            f"| {_median(runs, 'plan_read_s'):.2f} s | {_median(runs, 'read_and_compute_s'):.2f} s "
            f"| {_median(runs, 'scan_only_s'):.2f} s | {_median(runs, 'write_s'):.3f} s | {sql_median:.2f} s "
            f"| {wall / sql_median:.1f}x | {_median(runs, 'gx_gate_s'):.2f} s | {_median(runs, 'process_s'):.2f} s |"
        )
        print(f"  raw {day}: spark walls {[round(r['wall_s'], 2) for r in runs]}, sql {[round(s, 2) for s in sql]}", flush=True)
    return lines


def _backfill_table(url: str, repeat: int) -> list[str]:
    runs = []
    for i in range(repeat):
        runs.append(_run_worker("backfill", url, str(BACKFILL.first), str(BACKFILL.last)))
        print(f"  backfill run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f} s", flush=True)
    sql = _sql_day(url, BACKFILL, 3)
    timings = runs[0]["timings_s"]
    return [
        "| days | jobs read | wall (materialize, incl. checks) | asset step | check steps | Spark sessions | Dagster runs "
        "| checks passed | PostgreSQL one query (daily table) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(BACKFILL)} | {runs[0]['jobs_read']:,} | {_median(runs, 'wall_s'):.1f} s | {_median(runs, 'asset_step_s'):.1f} s "
        f"| {_median(runs, 'check_steps_s'):.1f} s | {max(r['spark_sessions_started'] for r in runs)} "
        f"| {max(r['dagster_runs'] for r in runs)} | {runs[0]['checks_passed']}/{runs[0]['check_evaluations']} "
        f"| {statistics.median(sql):.2f} s |",
        "",
        f"asset step detail (first run): {json.dumps(timings)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="Spark runs per day scenario (median)")
    parser.add_argument("--backfill-repeat", type=int, default=1)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--keep-data", action="store_true", help="reuse an already loaded kpi_benchmark database")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        name, *rest = args.worker
        worker = {"spark-day": _worker_spark_day, "backfill": _worker_backfill}[name]
        print(json.dumps(worker(*rest)))
        return 0

    server = None
    tmp = None
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        from videogen.config import normalize_database_url

        server_url = normalize_database_url(server_url)  # scripts/env.sh exports a libpq URL
    if not server_url:
        from videogen.devtools.local_postgres import LocalPostgres

        tmp = tempfile.TemporaryDirectory(prefix="kpi-bench-")
        server = LocalPostgres(Path(tmp.name) / "data", _free_port())
        print(f"starting PostgreSQL in {tmp.name} ...", flush=True)
        server.start()
        server_url = server.url("postgres")
    try:
        print("preparing data ...", flush=True)
        url = _prepare_database(server_url, args.keep_data)
        print(f"{os.cpu_count()} CPU(s); Spark master {os.environ.get('SPARK_MASTER', 'local[*]')}", flush=True)
        print("one day: Spark vs one PostgreSQL query ...", flush=True)
        report = ["", "## One day", "", *_day_table(url, args.repeat)]
        if not args.skip_backfill:
            print("365-day backfill through Dagster ...", flush=True)
            report += ["", f"## Backfill {BACKFILL}", "", *_backfill_table(url, args.backfill_repeat)]
        print("\n".join(report))
    finally:
        if server is not None:
            server.stop()
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
