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

DESCRIPTIONS = {
    "job_date": "UTC date of jobs.created_at",
    "total_jobs": "all jobs created that day, every status",
    "jobs": "all jobs of that model created that day, every status",
    "model": "jobs.model as submitted",
    "succeeded_jobs": "jobs in status succeeded",
    "failed_jobs": "jobs in status failed",
    "rejected_jobs": "jobs in status rejected (failed validation)",
    "canceled_jobs": "jobs in status canceled",
    "success_rate": "succeeded / (succeeded + failed); NULL when both are 0",
    "active_users": "distinct user_id",
    "avg_duration_s": "mean of finished_at - started_at over succeeded jobs, seconds",
    "median_duration_s": "exact median (percentile_cont 0.5) of finished_at - started_at, succeeded jobs",
    "p95_duration_s": "exact p95 (percentile_cont 0.95) of finished_at - started_at, succeeded jobs",
    "avg_latency_s": "mean of finished_at - created_at over succeeded jobs, seconds",
    "credits_consumed": "sum of credits (NULLs ignored, 0 when none)",
    "gpu_seconds": "sum of gpu_seconds (NULLs ignored, 0 when none)",
    "computed_at": "when this row was written",
}


def _column(name: str, type_: Any, *, nullable: bool = True, primary_key: bool = False) -> sa.Column:
    return sa.Column(name, type_, nullable=nullable and not primary_key, primary_key=primary_key, comment=DESCRIPTIONS[name])


_ts = sa.DateTime(timezone=True)
_double = DOUBLE_PRECISION
_credits = sa.Numeric(28, 4)

kpi_spark_daily = sa.Table(
    KPI_DAILY,
    metadata,
    _column("job_date", sa.Date, primary_key=True),
    *(_column(name, sa.BigInteger, nullable=False) for name in ("total_jobs", *STATUS_COUNT_COLUMNS)),
    _column("success_rate", _double),
    _column("active_users", sa.BigInteger, nullable=False),
    _column("avg_duration_s", _double),
    _column("median_duration_s", _double),
    _column("p95_duration_s", _double),
    _column("avg_latency_s", _double),
    _column("credits_consumed", _credits, nullable=False),
    _column("gpu_seconds", _double, nullable=False),
    _column("computed_at", _ts, nullable=False),
)

kpi_spark_daily_by_model = sa.Table(
    KPI_DAILY_BY_MODEL,
    metadata,
    _column("job_date", sa.Date, primary_key=True),
    _column("model", sa.Text, primary_key=True),
    *(_column(name, sa.BigInteger, nullable=False) for name in BY_MODEL_COUNT_COLUMNS),
    _column("success_rate", _double),
    _column("median_duration_s", _double),
    _column("p95_duration_s", _double),
    _column("gpu_seconds", _double, nullable=False),
    _column("credits_consumed", _credits, nullable=False),
    _column("computed_at", _ts, nullable=False),
)

TABLES = {KPI_DAILY: kpi_spark_daily, KPI_DAILY_BY_MODEL: kpi_spark_daily_by_model}

