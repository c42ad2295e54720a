"""Platform metrics computed from PostgreSQL, cached, so that any number of API replicas scraped at
any rate cost the database one set of aggregate queries per cache period and report the same values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from videogen.db.schema import STATUSES, jobs


@dataclass(frozen=True)
class PlatformSnapshot:
    jobs_by_status: dict[str, int]
    jobs_by_status_model: dict[tuple[str, str], int]
    oldest_pending_age_s: float
    stale_heartbeats: int
    failed_by_error_code: dict[str, int]
    credits_consumed: float
    gpu_seconds: float
    taken_at: float = field(default_factory=time.time)
    query_seconds: float = 0.0


def read_snapshot(engine: sa.Engine, *, heartbeat_timeout_s: float) -> PlatformSnapshot:
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
    by_status = {status: 0 for status in STATUSES}
    for (status, _), n in by_status_model.items():
        by_status[status] = by_status.get(status, 0) + n
    return PlatformSnapshot(by_status, by_status_model, float(oldest or 0.0), stale, failed, float(credits),
                            float(gpu), query_seconds=time.perf_counter() - started)


class PlatformCollector(Collector):
    """A prometheus-client collector over a cached :class:`PlatformSnapshot` (refreshed at most every
    ``cache_s``; concurrent scrapes of one process share one refresh)."""

    def __init__(self, engine: sa.Engine, *, heartbeat_timeout_s: float, cache_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.heartbeat_timeout_s, self.cache_s, self.clock = engine, heartbeat_timeout_s, cache_s, clock
        self._lock = threading.Lock()
        self._snapshot: PlatformSnapshot | None = None
        self._read_at = float("-inf")

    def snapshot(self) -> PlatformSnapshot:
        with self._lock:
            if self._snapshot is None or self.clock() - self._read_at >= self.cache_s:
                self._snapshot = read_snapshot(self.engine, heartbeat_timeout_s=self.heartbeat_timeout_s)
                self._read_at = self.clock()
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
        yield GaugeMetricFamily("videogen_platform_metrics_query_seconds",
                                "How long the last refresh of these metrics took in PostgreSQL.",
                                value=snap.query_seconds)
        yield GaugeMetricFamily("videogen_platform_metrics_age_seconds", "Age of the cached platform metrics.",
                                value=max(0.0, time.time() - snap.taken_at))
