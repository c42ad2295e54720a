"""The platform collector's values against rows written straight into PostgreSQL (no API process):
bucket bytes, the generation-time histogram and the KPI tables' last computation time, read through
prometheus-client's own exposition and parser."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from videogen.db.schema import jobs
from videogen.metrics.platform import GENERATION_BUCKETS, PlatformCollector


def exposed(engine) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(PlatformCollector(engine, heartbeat_timeout_s=60, cache_s=0))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def add_job(conn, **values) -> None:
    conn.execute(jobs.insert().values(user_id="u1", prompt="a cat", **values))


def test_bucket_bytes_generation_histogram_and_kpi_times_come_from_the_tables(engine):
    empty = exposed(engine)
    assert empty[("videogen_bucket_used_bytes", ())] == 0
    assert not [k for k in empty if k[0].startswith("videogen_generation_duration_seconds")]
    assert not [k for k in empty if k[0] == "videogen_kpi_table_last_computed_timestamp_seconds"]

    with engine.begin() as conn:
        add_job(conn, status="succeeded", model="tiny", gpu_seconds=0.5, output_uri="s3://b/1.mp4", output_size_bytes=1000)
        add_job(conn, status="succeeded", model="tiny", gpu_seconds=7.0, output_uri="s3://b/2.mp4", output_size_bytes=2000)
        # Output deleted by retention: its bytes are no longer in the bucket; its generation time counts.
        add_job(conn, status="succeeded", model="big", gpu_seconds=400.0, output_uri=None, output_size_bytes=5000)
        # Not succeeded: outside the histogram (its gpu_seconds may still grow with another attempt).
        add_job(conn, status="failed", model="tiny", gpu_seconds=3.0, error_code="GPU_OOM")
        add_job(conn, status="pending", model="tiny")
        computed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        conn.execute(sa.text("INSERT INTO kpi_spark_daily (job_date, total_jobs, succeeded_jobs, failed_jobs, "
                             "rejected_jobs, canceled_jobs, active_users, credits_consumed, gpu_seconds, computed_at) "
                             "VALUES (:d, 0, 0, 0, 0, 0, 0, 0, 0, :c)"), {"d": date(2026, 1, 1), "c": computed})
    metrics = exposed(engine)

    assert metrics[("videogen_bucket_used_bytes", ())] == 3000
    name = "videogen_generation_duration_seconds"
    assert metrics[(name + "_count", (("model", "tiny"),))] == 2
    assert metrics[(name + "_sum", (("model", "tiny"),))] == 7.5
    assert metrics[(name + "_count", (("model", "big"),))] == 1

    def bucket(model: str, le: str) -> float:
        return metrics[(name + "_bucket", (("le", le), ("model", model)))]

    assert (bucket("tiny", "1.0"), bucket("tiny", "5.0"), bucket("tiny", "10.0"), bucket("tiny", "+Inf")) == (1, 1, 2, 2)
    assert (bucket("big", "300.0"), bucket("big", "600.0")) == (0, 1)
    assert len([k for k in metrics if k[0] == name + "_bucket" and dict(k[1])["model"] == "tiny"]) == len(GENERATION_BUCKETS) + 1
    kpi = "videogen_kpi_table_last_computed_timestamp_seconds"
    assert metrics[(kpi, (("table", "kpi_spark_daily"),))] == computed.timestamp()
    assert (kpi, (("table", "kpi_spark_daily_by_model"),)) not in metrics  # empty table: no sample


def test_sensor_dispatch_and_kpi_reconciliation_come_from_the_tables(engine):
    metrics = exposed(engine)
    assert metrics[("videogen_jobs_oldest_due_pending_age_seconds", ())] == 0
    assert metrics[("videogen_jobs_last_queued_timestamp_seconds", ())] == 0
    assert metrics[("videogen_kpi_unreconciled_days", ())] == 0
    with engine.begin() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        # Waiting 10 minutes for the sensor; another one not due before an hour (a retry's delay).
        add_job(conn, status="pending", created_at=now - timedelta(minutes=10))
        add_job(conn, status="pending", created_at=now - timedelta(hours=2), not_before=now + timedelta(hours=1))
        queued = now - timedelta(minutes=3)
        add_job(conn, status="queued", created_at=now - timedelta(minutes=4), queued_at=queued)
        # Two days ago: 2 jobs, and a KPI row computed after that day says 1 (unreconciled); yesterday: 1 and 1.
        day2, day1 = (now - timedelta(days=2)).date(), (now - timedelta(days=1)).date()
        for day, n in ((day2, 2), (day1, 1)):
            for _ in range(n):
                add_job(conn, status="succeeded", created_at=datetime.combine(day, time(12), tzinfo=timezone.utc))
        for day, total in ((day2, 1), (day1, 1)):
            conn.execute(sa.text("INSERT INTO kpi_spark_daily (job_date, total_jobs, succeeded_jobs, failed_jobs, "
                                 "rejected_jobs, canceled_jobs, active_users, credits_consumed, gpu_seconds, computed_at) "
                                 "VALUES (:d, :t, 0, 0, 0, 0, 0, 0, 0, :c)"), {"d": day, "t": total, "c": now})
    metrics = exposed(engine)
    assert 600 <= metrics[("videogen_jobs_oldest_due_pending_age_seconds", ())] < 700
    assert metrics[("videogen_jobs_last_queued_timestamp_seconds", ())] == queued.timestamp()
    assert metrics[("videogen_kpi_unreconciled_days", ())] == 1


def test_queue_wait_and_stage_durations_come_from_the_jobs_and_their_audit_trail(engine):
    from videogen.db.schema import job_events
    from videogen.metrics.platform import QUEUE_WAIT_BUCKETS, STAGE_BUCKETS

    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:
        done = conn.execute(jobs.insert().values(
            user_id="u1", prompt="a cat", model="tiny", status="succeeded", created_at=t0,
            started_at=t0 + timedelta(seconds=7), finished_at=t0 + timedelta(seconds=20)).returning(jobs.c.id)).scalar_one()
        # Its trail: generate 4 s (retried once: the last attempt counts), encode 0.75 s, QA 0.25 s over
        # its two events, upload 2 s.
        for stage, at, message in (
                ("submit", 0, None), ("validate", 7, None), ("generate", 7.5, "generating with model tiny"),
                ("generate", 8, "out_of_memory: CUDA out of memory; retry 1 of 3 in 1 s"),
                ("generate", 9, "generating with model tiny"), ("encode", 13, None), ("qa", 13.75, "checking"),
                ("qa", 13.9, "quality gates passed"), ("upload", 14, None), ("done", 16, None)):
            conn.execute(job_events.insert().values(job_id=done, status="running", stage=stage, message=message,
                                                    created_at=t0 + timedelta(seconds=at)))
        # A film: its scenes' events are one generate stage, from the first scene to the assembly.
        film = conn.execute(jobs.insert().values(
            user_id="u1", prompt="a day", model="tiny-film", status="succeeded", created_at=t0,
            started_at=t0, finished_at=t0 + timedelta(seconds=9)).returning(jobs.c.id)).scalar_one()
        for stage, at in (("submit", 0), ("generate", 1), ("generate", 2), ("generate", 3), ("generate", 4),
                          ("encode", 7), ("done", 9)):
            conn.execute(job_events.insert().values(job_id=film, status="running", stage=stage,
                                                    created_at=t0 + timedelta(seconds=at)))
        add_job(conn, status="failed", model="tiny", created_at=t0, started_at=t0 + timedelta(seconds=100))
        add_job(conn, status="running", model="tiny", created_at=t0, started_at=t0 + timedelta(seconds=1))  # not final
    metrics = exposed(engine)

    def bucket(name: str, le: float, **labels) -> float:
        return metrics[(f"{name}_bucket", tuple(sorted({**labels, "le": str(le)}.items())))]

    assert metrics[("videogen_jobs_queue_wait_seconds_count", (("model", "tiny"),))] == 2
    assert metrics[("videogen_jobs_queue_wait_seconds_sum", (("model", "tiny"),))] == 107
    assert bucket("videogen_jobs_queue_wait_seconds", 10.0, model="tiny") == 1
    assert bucket("videogen_jobs_queue_wait_seconds", 120.0, model="tiny") == 2
    assert 10.0 in QUEUE_WAIT_BUCKETS and 120.0 in QUEUE_WAIT_BUCKETS
    assert metrics[("videogen_stage_duration_seconds_sum", (("model", "tiny-film"), ("stage", "generate")))] == 6.0
    for stage, seconds in (("generate", 4.0), ("encode", 0.75), ("qa", 0.25), ("upload", 2.0)):
        labels = (("model", "tiny"), ("stage", stage))
        assert metrics[("videogen_stage_duration_seconds_count", labels)] == 1
        assert metrics[("videogen_stage_duration_seconds_sum", labels)] == seconds
        first_bound = next(b for b in STAGE_BUCKETS if b >= seconds)
        assert bucket("videogen_stage_duration_seconds", first_bound, model="tiny", stage=stage) == 1
    assert not [k for k in metrics if k[0].startswith("videogen_stage") and ("stage", "validate") in k[1]]


def test_the_stage_histogram_is_refreshed_less_often_when_it_costs_more(engine):
    clock = [0.0]
    collector = PlatformCollector(engine, heartbeat_timeout_s=60, cache_s=5, stage_cost_factor=100,
                                  clock=lambda: clock[0])
    first = collector.snapshot()
    collector._stage_query_s = 0.5  # as if the audit trails took half a second to scan: next in 50 s
    clock[0] = 6.0
    second = collector.snapshot()
    assert second is not first and second.stage_query_seconds == 0.0  # the rest refreshed, stages kept
    assert second.stage_seconds == first.stage_seconds
    clock[0] = 51.0
    assert collector.snapshot().stage_query_seconds > 0.0  # due again


def test_kpi_check_failures_per_check_come_from_the_recorded_verdicts(engine):
    from videogen.kpi.tables import record_check_results

    assert not [k for k in exposed(engine) if k[0] == "videogen_kpi_check_failed_days"]
    verdict = {"table_name": "kpi_spark_daily", "check_name": "reconciliation", "severity": "ERROR", "failed_rules": ""}
    record_check_results(engine, [
        {**verdict, "job_date": date(2026, 1, 1), "passed": True},
        {**verdict, "job_date": date(2026, 1, 2), "passed": False, "failed_rules": "total_matches_jobs_count"},
        {**verdict, "job_date": date(2026, 1, 3), "passed": False, "severity": "WARN"},  # a warning: no failure
        {**verdict, "check_name": "consistency", "job_date": date(2026, 1, 2), "passed": True},
    ])
    labels = (("check", "reconciliation"), ("table", "kpi_spark_daily"))
    assert exposed(engine)[("videogen_kpi_check_failed_days", labels)] == 1
    assert exposed(engine)[("videogen_kpi_check_failed_days", (("check", "consistency"), ("table", "kpi_spark_daily")))] == 0
    # A later evaluation of the same day replaces the earlier one: fixed, so no failure any more.
    record_check_results(engine, [{**verdict, "job_date": date(2026, 1, 2), "passed": True}])
    metrics = exposed(engine)
    assert metrics[("videogen_kpi_check_failed_days", labels)] == 0
    assert metrics[("videogen_kpi_check_last_evaluated_timestamp_seconds", labels)] > 1.7e9
