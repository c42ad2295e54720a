"""Platform metrics computed from PostgreSQL, cached, so that any number of API replicas scraped at
any rate cost the database one set of aggregate queries per cache period and report the same values.

Every value is an aggregate over a table, never one row: the alert rules and dashboards of
k8s/monitoring/ (docs/operations.md) read these names, and tests/deploy/test_monitoring.py checks that
every name they use is one this collector or the API exports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from videogen.db.schema import STATUSES, jobs
from videogen.kpi.tables import KPI_DAILY, KPI_DAILY_BY_MODEL, kpi_check_results

# Upper bounds (seconds) of the generation-time histogram: the tiny test models take about a second,
# the production models minutes.
GENERATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0)
KPI_TABLES = (KPI_DAILY, KPI_DAILY_BY_MODEL)
# Upper bounds (seconds) of the queue-wait histogram (created → started) and of the per-stage one.
QUEUE_WAIT_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TIMED_STAGES = ("generate", "encode", "qa", "upload")

# Each timed stage of a succeeded job lasts from its first audit event to the first event of the next
# stage: consecutive events of one stage (a film's scenes, the QA gates' "checking" and "passed") are
# one segment. A stage retried after a transient failure ("…; retry 1 of 3 in 5 s") starts a new
# segment after that event, and only the last attempt counts.
STAGE_SECONDS_SQL = f"""
WITH ordered AS (
    SELECT e.id, e.job_id, e.stage, e.created_at,
           lag(e.stage) OVER (PARTITION BY e.job_id ORDER BY e.id) AS previous_stage,
           lag(e.message) OVER (PARTITION BY e.job_id ORDER BY e.id) AS previous_message
    FROM job_events e JOIN jobs j ON j.id = e.job_id
    WHERE j.status = 'succeeded'
), segments AS (
    SELECT job_id, stage, created_at, lead(created_at) OVER (PARTITION BY job_id ORDER BY id) AS next_at
    FROM ordered
    WHERE previous_stage IS DISTINCT FROM stage OR previous_message LIKE '%; retry % of % in %'
), last_attempt AS (
    SELECT DISTINCT ON (job_id, stage) job_id, stage, extract(epoch FROM next_at - created_at) AS seconds
    FROM segments
    WHERE stage IN ({", ".join(f"'{stage}'" for stage in TIMED_STAGES)}) AND next_at IS NOT NULL
    ORDER BY job_id, stage, created_at DESC
)
SELECT j.model, l.stage,
       {", ".join(f"count(*) FILTER (WHERE l.seconds <= {bound})" for bound in STAGE_BUCKETS)},
       count(*), sum(l.seconds)
FROM last_attempt l JOIN jobs j ON j.id = l.job_id
GROUP BY j.model, l.stage
"""


@dataclass(frozen=True)
class PlatformSnapshot:
    jobs_by_status: dict[str, int]
    jobs_by_status_model: dict[tuple[str, str], int]
    oldest_pending_age_s: float
    stale_heartbeats: int
    failed_by_error_code: dict[str, int]
    credits_consumed: float
    gpu_seconds: float
    # Sum of output_size_bytes of the jobs whose video is still in the bucket (output_uri set: the
    # retention job and account erasure clear it when they delete the object).
    bucket_used_bytes: float = 0.0
    # model -> (cumulative counts per GENERATION_BUCKETS bound, count, sum) over succeeded jobs.
    generation_seconds: dict[str, tuple[tuple[int, ...], int, float]] = field(default_factory=dict)
    # KPI table -> Unix time of its newest computed_at (absent while the table is empty).
    kpi_computed_at: dict[str, float] = field(default_factory=dict)
    # Age of the oldest pending job the pending-jobs sensor may take now (not_before passed), and the
    # Unix time a job was last marked queued (0 when never): together, whether the sensor is ticking.
    oldest_due_pending_age_s: float = 0.0
    last_queued_at: float = 0.0
    # Past days (of the last 7) whose kpi_spark_daily.total_jobs differs from count(*) of jobs that
    # day although the row was computed after the day ended: the KPI reconciliation check's rule.
    kpi_unreconciled_days: int = 0
    # model -> (cumulative counts per QUEUE_WAIT_BUCKETS bound, count, sum) over finished jobs that ran.
    queue_wait_seconds: dict[str, tuple[tuple[int, ...], int, float]] = field(default_factory=dict)
    # (model, stage) -> (cumulative counts per STAGE_BUCKETS bound, count, sum) over succeeded jobs.
    stage_seconds: dict[tuple[str, str], tuple[tuple[int, ...], int, float]] = field(default_factory=dict)
    taken_at: float = field(default_factory=time.time)
    query_seconds: float = 0.0
    stage_query_seconds: float = 0.0
    # (KPI table, check) -> (days whose latest verdict is a failure of severity ERROR, Unix time of the
    # latest evaluation), from kpi_check_results (written by the KPI asset checks).
    kpi_checks: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)


UNRECONCILED_DAYS_SQL = f"""
SELECT count(*) FROM {KPI_DAILY} k
WHERE k.job_date >= (now() AT TIME ZONE 'UTC')::date - 7 AND k.job_date < (now() AT TIME ZONE 'UTC')::date
  AND k.computed_at >= (k.job_date + 1)::timestamp AT TIME ZONE 'UTC'
  AND k.total_jobs <> (SELECT count(*) FROM jobs j WHERE j.created_at >= k.job_date::timestamp AT TIME ZONE 'UTC'
                                                     AND j.created_at < (k.job_date + 1)::timestamp AT TIME ZONE 'UTC')
"""


def read_snapshot(engine: sa.Engine, *, heartbeat_timeout_s: float, stages: bool = True) -> PlatformSnapshot:
    """Every platform figure from PostgreSQL; ``stages=False`` skips the stage-time histogram (a scan of
    the succeeded jobs' audit trails, the one costly query: the collector refreshes it less often)."""
    started = time.perf_counter()
    with engine.connect() as conn:
        by_status_model = {(row.status, row.model): row.n for row in conn.execute(
            sa.select(jobs.c.status, jobs.c.model, sa.func.count().label("n")).group_by(jobs.c.status, jobs.c.model))}
        oldest = conn.execute(sa.select(sa.func.extract("epoch", sa.func.now() - sa.func.min(jobs.c.created_at)))
                              .where(jobs.c.status == "pending")).scalar()
        stale = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.status == "running",
            sa.func.coalesce(jobs.c.heartbeat_at, jobs.c.started_at, jobs.c.updated_at)
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, heartbeat_timeout_s))).scalar_one()
        failed = {row.error_code or "unknown": row.n for row in conn.execute(
            sa.select(jobs.c.error_code, sa.func.count().label("n")).where(jobs.c.status == "failed")
            .group_by(jobs.c.error_code))}
        credits, gpu = conn.execute(sa.select(
            sa.func.coalesce(sa.func.sum(jobs.c.credits).filter(jobs.c.status == "succeeded"), 0),
            sa.func.coalesce(sa.func.sum(jobs.c.gpu_seconds), 0))).one()
        bucket_bytes = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(jobs.c.output_size_bytes), 0))
                                    .where(jobs.c.output_uri.is_not(None))).scalar_one()
        # A succeeded job's gpu_seconds no longer changes (they add up over its attempts while it
        # runs), so these counts only grow: a cumulative histogram Prometheus can take rate() of.
        bucket_counts = [sa.func.count().filter(jobs.c.gpu_seconds <= bound) for bound in GENERATION_BUCKETS]
        generation = {row[0]: (tuple(row[1:-2]), row[-2], float(row[-1])) for row in conn.execute(
            sa.select(jobs.c.model, *bucket_counts, sa.func.count(), sa.func.sum(jobs.c.gpu_seconds))
            .where(jobs.c.status == "succeeded", jobs.c.gpu_seconds.is_not(None)).group_by(jobs.c.model))}
        due_age, last_queued = conn.execute(sa.select(
            sa.func.extract("epoch", sa.func.now() - sa.func.min(
                sa.func.greatest(jobs.c.created_at, sa.func.coalesce(jobs.c.not_before, jobs.c.created_at)))
                .filter(jobs.c.status == "pending",
                        sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.func.now()))),
            sa.func.extract("epoch", sa.func.max(jobs.c.queued_at)))).one()
        unreconciled = conn.execute(sa.text(UNRECONCILED_DAYS_SQL)).scalar_one()
        checks = kpi_check_results.c
        kpi_checks = {(row.table_name, row.check_name): (row.failed, float(row.last)) for row in conn.execute(
            sa.select(checks.table_name, checks.check_name,
                      sa.func.count().filter(sa.not_(checks.passed), checks.severity == "ERROR").label("failed"),
                      sa.func.extract("epoch", sa.func.max(checks.evaluated_at)).label("last"))
            .group_by(checks.table_name, checks.check_name))}
        # Finished jobs only: a requeued job's started_at moves, a finished one's does not.
        wait = sa.func.extract("epoch", jobs.c.started_at - jobs.c.created_at)
        queue_wait = {row[0]: (tuple(row[1:-2]), row[-2], float(row[-1] or 0.0)) for row in conn.execute(
            sa.select(jobs.c.model, *[sa.func.count().filter(wait <= bound) for bound in QUEUE_WAIT_BUCKETS],
                      sa.func.count(), sa.func.sum(wait))
            .where(jobs.c.status.in_(("succeeded", "failed")), jobs.c.started_at.is_not(None))
            .group_by(jobs.c.model))}
        stages_started = time.perf_counter()
        stage_seconds = {(row[0], row[1]): (tuple(row[2:-2]), row[-2], float(row[-1] or 0.0))
                         for row in conn.execute(sa.text(STAGE_SECONDS_SQL))} if stages else {}
        stage_query_seconds = time.perf_counter() - stages_started if stages else 0.0
        kpi = {}
        for table in KPI_TABLES:
            newest = conn.execute(sa.text(f"SELECT extract(epoch FROM max(computed_at)) FROM {table}")).scalar()
            if newest is not None:
                kpi[table] = float(newest)
    by_status = {status: 0 for status in STATUSES}
    for (status, _), n in by_status_model.items():
        by_status[status] = by_status.get(status, 0) + n
    return PlatformSnapshot(by_status, by_status_model, float(oldest or 0.0), stale, failed, float(credits),
                            float(gpu), bucket_used_bytes=float(bucket_bytes), generation_seconds=generation,
                            kpi_computed_at=kpi, oldest_due_pending_age_s=float(due_age or 0.0),
                            last_queued_at=float(last_queued or 0.0), kpi_unreconciled_days=int(unreconciled),
                            queue_wait_seconds=queue_wait, stage_seconds=stage_seconds,
                            stage_query_seconds=stage_query_seconds, kpi_checks=kpi_checks,
                            query_seconds=time.perf_counter() - started)


class PlatformCollector(Collector):
    """A prometheus-client collector over a cached :class:`PlatformSnapshot` (refreshed at most every
    ``cache_s``; concurrent scrapes of one process share one refresh)."""

    def __init__(self, engine: sa.Engine, *, heartbeat_timeout_s: float, cache_s: float = 5.0,
                 stage_cost_factor: float = 100.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.heartbeat_timeout_s, self.cache_s, self.clock = engine, heartbeat_timeout_s, cache_s, clock
        # The stage-time histogram scans every succeeded job's audit trail (~0.1 s per 10,000 jobs): it
        # is refreshed with the rest, but never sooner than 100 times its own last duration after it
        # (at most 1 % of the time in that query; a rate() over 30 minutes does not notice).
        self.stage_cost_factor = stage_cost_factor
        self._stage_query_s = 0.0
        self._lock = threading.Lock()
        self._snapshot: PlatformSnapshot | None = None
        self._read_at = self._stages_read_at = float("-inf")

    def snapshot(self) -> PlatformSnapshot:
        with self._lock:
            now = self.clock()
            if self._snapshot is None or now - self._read_at >= self.cache_s:
                stages_due = (self._snapshot is None
                              or now - self._stages_read_at >= self.stage_cost_factor * self._stage_query_s)
                fresh = read_snapshot(self.engine, heartbeat_timeout_s=self.heartbeat_timeout_s, stages=stages_due)
                if stages_due:
                    self._stages_read_at, self._stage_query_s = now, fresh.stage_query_seconds
                else:
                    fresh = replace(fresh, stage_seconds=self._snapshot.stage_seconds)
                self._snapshot, self._read_at = fresh, now
            return self._snapshot

    def collect(self) -> Iterator:
        snap = self.snapshot()
        by_status = GaugeMetricFamily("videogen_jobs", "Jobs in the jobs table by status and model.",
                                      labels=["status", "model"])
        for (status, model), n in sorted(snap.jobs_by_status_model.items()):
            by_status.add_metric([status, model], n)
        yield by_status
        yield GaugeMetricFamily("videogen_jobs_oldest_pending_age_seconds",
                                "Age of the oldest pending job (0 when none is pending).",
                                value=snap.oldest_pending_age_s)
        yield GaugeMetricFamily("videogen_jobs_stale_heartbeat",
                                "Running jobs whose worker stopped sending heartbeats.", value=snap.stale_heartbeats)
        failed = GaugeMetricFamily("videogen_jobs_failed", "Failed jobs by error code.", labels=["error_code"])
        for code, n in sorted(snap.failed_by_error_code.items()):
            failed.add_metric([code], n)
        yield failed
        yield CounterMetricFamily("videogen_credits_consumed", "Credits charged for succeeded jobs.",
                                  value=snap.credits_consumed)
        yield CounterMetricFamily("videogen_gpu_seconds", "Seconds of generation (denoising) of all jobs.",
                                  value=snap.gpu_seconds)
        yield GaugeMetricFamily("videogen_bucket_used_bytes",
                                "Bytes of the videos the jobs table says are in the bucket (sum of output_size_bytes "
                                "of jobs whose output is kept).", value=snap.bucket_used_bytes)
        generation = HistogramMetricFamily(
            "videogen_generation_duration_seconds",
            "Generation time (gpu_seconds, all attempts) of succeeded jobs, by model.", labels=["model"])
        for model, (counts, count, total) in sorted(snap.generation_seconds.items()):
            generation.add_metric([model], _buckets(GENERATION_BUCKETS, counts, count), total)
        yield generation
        queue_wait = HistogramMetricFamily(
            "videogen_jobs_queue_wait_seconds",
            "Time from submission (created_at) to the start of the run (started_at) of finished jobs, by model.",
            labels=["model"])
        for model, (counts, count, total) in sorted(snap.queue_wait_seconds.items()):
            queue_wait.add_metric([model], _buckets(QUEUE_WAIT_BUCKETS, counts, count), total)
        yield queue_wait
        stages = HistogramMetricFamily(
            "videogen_stage_duration_seconds",
            "Wall time of the generate, encode and upload stages of succeeded jobs (from the audit trail), "
            "by model and stage.", labels=["model", "stage"])
        for (model, stage), (counts, count, total) in sorted(snap.stage_seconds.items()):
            stages.add_metric([model, stage], _buckets(STAGE_BUCKETS, counts, count), total)
        yield stages
        kpi = GaugeMetricFamily("videogen_kpi_table_last_computed_timestamp_seconds",
                                "Unix time of the newest computed_at of a KPI table (its last materialization).",
                                labels=["table"])
        for table, at in sorted(snap.kpi_computed_at.items()):
            kpi.add_metric([table], at)
        yield kpi
        failed_checks = GaugeMetricFamily("videogen_kpi_check_failed_days",
                                          "Days whose latest evaluation of a KPI asset check failed (severity "
                                          "ERROR), by table and check.", labels=["table", "check"])
        evaluated = GaugeMetricFamily("videogen_kpi_check_last_evaluated_timestamp_seconds",
                                      "Unix time of the latest evaluation of a KPI asset check.",
                                      labels=["table", "check"])
        for (table, check), (failed, last) in sorted(snap.kpi_checks.items()):
            failed_checks.add_metric([table, check], failed)
            evaluated.add_metric([table, check], last)
        yield failed_checks
        yield evaluated
        yield GaugeMetricFamily("videogen_kpi_unreconciled_days",
                                "Past days (last 7) whose kpi_spark_daily total_jobs differs from the jobs table "
                                "(the KPI reconciliation check's rule).", value=snap.kpi_unreconciled_days)
        yield GaugeMetricFamily("videogen_jobs_oldest_due_pending_age_seconds",
                                "Age of the oldest pending job the pending-jobs sensor may dispatch now "
                                "(0 when none).", value=snap.oldest_due_pending_age_s)
        yield GaugeMetricFamily("videogen_jobs_last_queued_timestamp_seconds",
                                "Unix time the pending-jobs sensor last marked a job queued (0 when never).",
                                value=snap.last_queued_at)
        yield GaugeMetricFamily("videogen_platform_metrics_query_seconds",
                                "How long the last refresh of these metrics took in PostgreSQL.",
                                value=snap.query_seconds)
        yield GaugeMetricFamily("videogen_platform_metrics_age_seconds", "Age of the cached platform metrics.",
                                value=max(0.0, time.time() - snap.taken_at))


def _le(bound: float) -> str:
    return floatToGoString(bound)


def _buckets(bounds: tuple[float, ...], counts: tuple[int, ...], count: int) -> list[tuple[str, int]]:
    return [(_le(bound), n) for bound, n in zip(bounds, counts)] + [("+Inf", count)]
