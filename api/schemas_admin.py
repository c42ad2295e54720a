"""Response bodies of the staff and privacy routes: daily KPIs (``api/routes/kpis.py``) and account
erasures (``api/routes/privacy.py``). Credit amounts are strings, as everywhere in the API (exact
decimals, never binary floats)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class KpiDayOut(BaseModel):
    """One row of ``kpi_spark_daily``: the jobs created on one UTC day."""

    job_date: date = Field(description="UTC date of jobs.created_at")
    total_jobs: int = Field(description="all jobs created that day, every status")
    succeeded_jobs: int
    failed_jobs: int
    rejected_jobs: int
    canceled_jobs: int
    success_rate: float | None = Field(description="succeeded / (succeeded + failed); null when both are 0")
    active_users: int = Field(description="distinct users with a job that day")
    avg_duration_s: float | None = Field(description="mean of finished_at - started_at over succeeded jobs")
    median_duration_s: float | None
    p95_duration_s: float | None
    avg_latency_s: float | None = Field(description="mean of finished_at - created_at over succeeded jobs")
    credits_consumed: str = Field(description="sum of the credits of the day's jobs")
    gpu_seconds: float
    computed_at: datetime = Field(description="when the KPI job wrote this row")


class KpiDailyOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="first day asked for (inclusive)")
    to: date = Field(description="last day asked for (inclusive)")
    days: list[KpiDayOut] = Field(description="the computed days of the range, oldest first; a day the KPI "
                                              "job has not computed yet is absent")


class KpiModelDayOut(BaseModel):
    """One row of ``kpi_spark_daily_by_model``: one model's jobs created on one UTC day."""

    job_date: date
    model: str
    jobs: int
    succeeded_jobs: int
    failed_jobs: int
    success_rate: float | None = Field(description="succeeded / (succeeded + failed); null when both are 0")
    median_duration_s: float | None
    p95_duration_s: float | None
    gpu_seconds: float
    credits_consumed: str
    computed_at: datetime


class KpiByModelOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    rows: list[KpiModelDayOut] = Field(description="by day, then model; only days and models that had jobs")


class ErasureOut(BaseModel):
    """What an account erasure removed. The account's rows now carry ``anonymized_user_id``."""

    anonymized_user_id: str
    jobs_anonymized: int = Field(description="jobs whose prompt, outputs and callback were removed")
    jobs_canceled: int = Field(description="pending, queued or running jobs canceled (their credits refunded)")
    objects_deleted: int = Field(description="objects deleted from the storage (videos, thumbnails, manifests)")
    keys_revoked: int = Field(description="API keys revoked")
    refresh_tokens_revoked: int = Field(description="refresh tokens (sessions) revoked")
    erased_at: datetime
