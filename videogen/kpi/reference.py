"""The same KPIs as one PostgreSQL query: the yardstick for Spark.

Used by the benchmark (Spark against the database doing it alone), by the reconciliation rule
(direct counts of ``jobs`` per day) and by the tests. It states the definitions of SPEC §6 in plain
SQL, with ``percentile_cont`` for the median and p95, so an analyst can read what each column means.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa

from videogen.kpi.dates import DayRange

_JOBS_OF_RANGE = """
jobs_of_range AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS job_date,
           user_id,
           model,
           status,
           CASE WHEN status = 'succeeded'
                THEN EXTRACT(EPOCH FROM (finished_at - started_at))::float8 END AS duration_s,
           CASE WHEN status = 'succeeded'
                THEN EXTRACT(EPOCH FROM (finished_at - created_at))::float8 END AS latency_s,
           gpu_seconds,
           credits
    FROM jobs
    WHERE created_at >= :start AND created_at < :end
)"""

DAILY_KPI_SQL = f"""
WITH {_JOBS_OF_RANGE},
per_day AS (
    SELECT job_date,
           count(*) AS total_jobs,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded_jobs,
           count(*) FILTER (WHERE status = 'failed') AS failed_jobs,
           count(*) FILTER (WHERE status = 'rejected') AS rejected_jobs,
           count(*) FILTER (WHERE status = 'canceled') AS canceled_jobs,
           count(DISTINCT user_id) AS active_users,
           avg(duration_s) AS avg_duration_s,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS median_duration_s,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95_duration_s,
           avg(latency_s) AS avg_latency_s,
           coalesce(sum(credits), 0)::numeric(28, 4) AS credits_consumed,
           coalesce(sum(gpu_seconds), 0)::float8 AS gpu_seconds
    FROM jobs_of_range
    GROUP BY job_date
)
SELECT day::date AS job_date,
       coalesce(total_jobs, 0) AS total_jobs,
       coalesce(succeeded_jobs, 0) AS succeeded_jobs,
       coalesce(failed_jobs, 0) AS failed_jobs,
       coalesce(rejected_jobs, 0) AS rejected_jobs,
       coalesce(canceled_jobs, 0) AS canceled_jobs,
       CASE WHEN succeeded_jobs + failed_jobs > 0
            THEN succeeded_jobs::float8 / (succeeded_jobs + failed_jobs) END AS success_rate,
       coalesce(active_users, 0) AS active_users,
       avg_duration_s,
       median_duration_s,
       p95_duration_s,
       avg_latency_s,
       coalesce(credits_consumed, 0)::numeric(28, 4) AS credits_consumed,
       coalesce(gpu_seconds, 0)::float8 AS gpu_seconds
FROM generate_series(CAST(:first AS date), CAST(:last AS date), interval '1 day') AS day
LEFT JOIN per_day ON per_day.job_date = day::date
ORDER BY 1
"""

DAILY_BY_MODEL_KPI_SQL = f"""
WITH {_JOBS_OF_RANGE}
SELECT job_date,
       model,
       count(*) AS jobs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded_jobs,
       count(*) FILTER (WHERE status = 'failed') AS failed_jobs,
       CASE WHEN count(*) FILTER (WHERE status IN ('succeeded', 'failed')) > 0
            THEN (count(*) FILTER (WHERE status = 'succeeded'))::float8
                 / count(*) FILTER (WHERE status IN ('succeeded', 'failed')) END AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS median_duration_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95_duration_s,
       coalesce(sum(gpu_seconds), 0)::float8 AS gpu_seconds,
       coalesce(sum(credits), 0)::numeric(28, 4) AS credits_consumed
FROM jobs_of_range
GROUP BY job_date, model
ORDER BY job_date, model
"""

JOBS_PER_DAY_SQL = """
SELECT (created_at AT TIME ZONE 'UTC')::date AS job_date, count(*) AS jobs
FROM jobs
WHERE created_at >= :start AND created_at < :end
GROUP BY 1
"""

JOBS_PER_DAY_AND_MODEL_SQL = """
SELECT (created_at AT TIME ZONE 'UTC')::date AS job_date, model, count(*) AS jobs
FROM jobs
WHERE created_at >= :start AND created_at < :end
GROUP BY 1, 2
"""


def _params(days: DayRange) -> dict[str, Any]:
    return {"start": days.start_ts, "end": days.end_ts, "first": days.first, "last": days.last}


def daily_kpis_sql(engine: sa.Engine, days: DayRange) -> list[dict[str, Any]]:
    """``kpi_spark_daily``'s rows for ``days`` (without ``computed_at``), computed by PostgreSQL."""
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.text(DAILY_KPI_SQL), _params(days)).mappings()]


def daily_by_model_kpis_sql(engine: sa.Engine, days: DayRange) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(sa.text(DAILY_BY_MODEL_KPI_SQL), _params(days)).mappings()]


def jobs_per_day(engine: sa.Engine, days: DayRange) -> dict[date, int]:
    """Direct count of ``jobs`` per UTC day (the reconciliation's other side); absent days are 0."""
    with engine.connect() as conn:
        found = dict(conn.execute(sa.text(JOBS_PER_DAY_SQL), _params(days)).all())
    return {day: found.get(day, 0) for day in days}


def jobs_per_day_and_model(engine: sa.Engine, days: DayRange) -> dict[tuple[date, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(JOBS_PER_DAY_AND_MODEL_SQL), _params(days)).all()
    return {(day, model): jobs for day, model, jobs in rows}
