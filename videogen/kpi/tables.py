"""The KPI tables as SQLAlchemy Core objects (what migration 0002 creates) and their column orders.

``kpi_spark_daily`` has exactly the columns of SPEC §6, one row per UTC day, days without jobs
included (zeros, NULL rates and durations). ``kpi_spark_daily_by_model`` has one row per day and
model that had jobs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

metadata = sa.MetaData()

KPI_DAILY = "kpi_spark_daily"
KPI_DAILY_BY_MODEL = "kpi_spark_daily_by_model"

DAILY_COLUMNS = (
    "job_date",
    "total_jobs",
    "succeeded_jobs",
    "failed_jobs",
    "rejected_jobs",
    "canceled_jobs",
    "success_rate",
    "active_users",
    "avg_duration_s",
    "median_duration_s",
    "p95_duration_s",
    "avg_latency_s",
    "credits_consumed",
    "gpu_seconds",
    "computed_at",
)
DAILY_COUNT_COLUMNS = ("total_jobs", "succeeded_jobs", "failed_jobs", "rejected_jobs", "canceled_jobs", "active_users")
STATUS_COUNT_COLUMNS = ("succeeded_jobs", "failed_jobs", "rejected_jobs", "canceled_jobs")

BY_MODEL_COLUMNS = (
    "job_date",
    "model",
    "jobs",
    "succeeded_jobs",
    "failed_jobs",
    "success_rate",
    "median_duration_s",
    "p95_duration_s",
    "gpu_seconds",
    "credits_consumed",
    "computed_at",
)
BY_MODEL_COUNT_COLUMNS = ("jobs", "succeeded_jobs", "failed_jobs")

# Column and table comments exactly as migration 0002 wrote them into the database: the migration is
# the deployed truth, and tests/test_migrations.py compares this metadata with a migrated database.
# The Dagster assets show the same text (assets/kpi.py reads ``column.comment``).
_SHARED_COMMENTS = {
    "job_date": "UTC date of jobs.created_at",
    "succeeded_jobs": "jobs in status succeeded",
    "failed_jobs": "jobs in status failed",
    "success_rate": "succeeded / (succeeded + failed); NULL when both are 0",
    "computed_at": "when this row was written",
}
DAILY_COMMENTS = {
    **_SHARED_COMMENTS,
    "total_jobs": "all jobs created that day, every status",
    "rejected_jobs": "jobs in status rejected (failed validation)",
    "canceled_jobs": "jobs in status canceled",
    "active_users": "distinct user_id",
    "avg_duration_s": "mean of finished_at - started_at over succeeded jobs",
    "median_duration_s": "exact median (percentile_cont 0.5) of the duration",
    "p95_duration_s": "exact p95 (percentile_cont 0.95) of the duration",
    "avg_latency_s": "mean of finished_at - created_at over succeeded jobs",
    "credits_consumed": "sum of credits over all jobs of the day (NULLs ignored, 0 when none)",
    "gpu_seconds": "sum of gpu_seconds over all jobs of the day (NULLs ignored, 0 when none)",
}
BY_MODEL_COMMENTS = {
    **_SHARED_COMMENTS,
    "model": "jobs.model as submitted",
    "jobs": "all jobs of that model created that day",
    "median_duration_s": "exact median (percentile_cont 0.5) of finished_at - started_at, succeeded jobs",
    "p95_duration_s": "exact p95 (percentile_cont 0.95) of the same duration",
    "gpu_seconds": "sum of gpu_seconds (NULLs ignored)",
    "credits_consumed": "sum of credits (NULLs ignored)",
}


def _columns(comments: dict[str, str], *specs: tuple[str, Any, str]) -> list[sa.Column]:
    """``(name, type, "pk" | "not null" | "null")`` -> columns commented from ``comments``."""
    return [
        sa.Column(name, type_, primary_key=kind == "pk", nullable=kind == "null", comment=comments[name])
        for name, type_, kind in specs
    ]


_ts = sa.DateTime(timezone=True)
_double = DOUBLE_PRECISION
_credits = sa.Numeric(28, 4)

kpi_spark_daily = sa.Table(
    KPI_DAILY,
    metadata,
    *_columns(
        DAILY_COMMENTS,
        ("job_date", sa.Date, "pk"),
        *((name, sa.BigInteger, "not null") for name in ("total_jobs", *STATUS_COUNT_COLUMNS)),
        ("success_rate", _double, "null"),
        ("active_users", sa.BigInteger, "not null"),
        ("avg_duration_s", _double, "null"),
        ("median_duration_s", _double, "null"),
        ("p95_duration_s", _double, "null"),
        ("avg_latency_s", _double, "null"),
        ("credits_consumed", _credits, "not null"),
        ("gpu_seconds", _double, "not null"),
        ("computed_at", _ts, "not null"),
    ),
    comment="Daily job KPIs (UTC days), written by Spark; one row per day, including days without jobs",
)

kpi_spark_daily_by_model = sa.Table(
    KPI_DAILY_BY_MODEL,
    metadata,
    *_columns(
        BY_MODEL_COMMENTS,
        ("job_date", sa.Date, "pk"),
        ("model", sa.Text, "pk"),
        *((name, sa.BigInteger, "not null") for name in BY_MODEL_COUNT_COLUMNS),
        ("success_rate", _double, "null"),
        ("median_duration_s", _double, "null"),
        ("p95_duration_s", _double, "null"),
        ("gpu_seconds", _double, "not null"),
        ("credits_consumed", _credits, "not null"),
        ("computed_at", _ts, "not null"),
    ),
    comment="Daily job KPIs per model (UTC days), written by Spark; days without jobs have no rows",
)

TABLES = {KPI_DAILY: kpi_spark_daily, KPI_DAILY_BY_MODEL: kpi_spark_daily_by_model}



# The latest verdict of each KPI asset check for each day (migration 0005), written by the checks.
kpi_check_results = sa.Table(
    "kpi_check_results",
    metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("check_name", sa.Text, primary_key=True),
    sa.Column("job_date", sa.Date, primary_key=True),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("failed_rules", sa.Text, nullable=False, server_default=""),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)


def record_check_results(engine: sa.Engine, results: list[dict[str, Any]]) -> None:
    """Upsert check verdicts (table_name, check_name, job_date, passed, severity, failed_rules): the
    latest evaluation of a check for a day replaces the previous one."""
    from sqlalchemy.dialects.postgresql import insert

    if not results:
        return
    statement = insert(kpi_check_results).values(results)
    statement = statement.on_conflict_do_update(
        index_elements=["table_name", "check_name", "job_date"],
        set_={"passed": statement.excluded.passed, "severity": statement.excluded.severity,
              "failed_rules": statement.excluded.failed_rules, "evaluated_at": sa.func.now()})
    with engine.begin() as conn:
        conn.execute(statement)
