"""The KPIs of SPEC §6 for a whole day range, as Spark DataFrames grouped by ``job_date``.

A backfill of a year is one read and one aggregation, not 365: every expression below is grouped by
day (and model). Choices that matter for the numbers:

- median and p95 are exact and interpolate like PostgreSQL's ``percentile_cont``: the day's
  durations are collected and sorted (``sort_array(collect_list(...))``), then read at position
  ``p * (n - 1)`` with linear interpolation between the two neighbouring values. Spark's own exact
  ``percentile`` gives the same numbers but counts values in a hash map; on 1M rows (2 cores) it
  took 4.5 s where the sort took 2.6 s. ``percentile_approx`` would be faster and wrong in the last
  digits, which an analyst comparing with SQL would notice. Memory: one array of a day's durations
  per group (8 bytes a value plus boxing), e.g. ~100 MB for a day of 5M succeeded jobs;
- distinct users are ``size(collect_set(user_id))`` in the same aggregation, not ``countDistinct``:
  a distinct aggregate next to others makes Spark expand every row once per distinct group
  (measured by the team: 119 s for 1M rows next to ``percentile_approx``). A separate
  ``distinct().groupBy().count()`` joined back avoids that too, but reads ``jobs`` a second time (or
  caches it); measured here on 1M rows and 2 cores, the one-pass ``collect_set`` took 5-6 s where the
  join took 8-9 s (cached) or 7-8.5 s (two reads). The set holds one day's distinct ids per group;
- durations and latencies count only succeeded jobs with both timestamps; credit and GPU sums ignore
  NULLs and are 0, not NULL, when nothing was metered (a sum of nothing is zero to an analyst).

Days without any job are not in these DataFrames (there is nothing to group); :mod:`.pipeline` adds
their zero rows after collecting, see :func:`empty_daily_row`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

CREDITS_TYPE = "decimal(28,4)"


def _status_count(status: str) -> Column:
    from pyspark.sql import functions as F

    return F.count_if(F.col("status") == F.lit(status))


def _success_rate(succeeded: str, failed: str) -> Column:
    from pyspark.sql import functions as F

    decided = F.col(succeeded) + F.col(failed)
    return F.when(decided > 0, F.col(succeeded) / decided)


def _succeeded(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(F.col("status") == F.lit("succeeded"), F.col(column))


def _sorted_values(column: str) -> Column:
    from pyspark.sql import functions as F

    # collect_list skips NULLs (jobs without both timestamps), as percentile_cont does.
    return F.sort_array(F.collect_list(_succeeded(column)))


def _interpolated(sorted_values: str, fraction: float) -> Column:
    """percentile_cont(fraction) of an ascending array: linear between ranks floor/ceil of p*(n-1)."""
    from pyspark.sql import functions as F

    n = F.size(sorted_values)
    position = (n - 1) * F.lit(fraction)
    lower = F.floor(position).cast("int")
    below = F.try_element_at(sorted_values, lower + 1)  # 1-based
    above = F.try_element_at(sorted_values, F.least(lower + 2, n))
    return F.when(n > 0, below + (above - below) * (position - lower))


def _metered_sums() -> list[Column]:
    from pyspark.sql import functions as F

    return [
        F.coalesce(F.sum("gpu_seconds"), F.lit(0.0)).alias("gpu_seconds"),
        F.coalesce(F.sum("credits"), F.lit(0)).cast(CREDITS_TYPE).alias("credits_consumed"),
    ]


def compute_daily(jobs: DataFrame) -> DataFrame:
    """One row per ``job_date`` present in ``jobs``, columns of ``kpi_spark_daily`` but ``computed_at``."""
    from pyspark.sql import functions as F

    per_day = jobs.groupBy("job_date").agg(
        F.count(F.lit(1)).alias("total_jobs"),
        _status_count("succeeded").alias("succeeded_jobs"),
        _status_count("failed").alias("failed_jobs"),
        _status_count("rejected").alias("rejected_jobs"),
        _status_count("canceled").alias("canceled_jobs"),
        F.size(F.collect_set("user_id")).cast("bigint").alias("active_users"),
        F.avg(_succeeded("duration_s")).alias("avg_duration_s"),
        _sorted_values("duration_s").alias("sorted_durations"),
        F.avg(_succeeded("latency_s")).alias("avg_latency_s"),
        *_metered_sums(),
    )
    return per_day.select(
        "job_date",
        "total_jobs",
        "succeeded_jobs",
        "failed_jobs",
        "rejected_jobs",
        "canceled_jobs",
        _success_rate("succeeded_jobs", "failed_jobs").alias("success_rate"),
        "active_users",
        "avg_duration_s",
        _interpolated("sorted_durations", 0.5).alias("median_duration_s"),
        _interpolated("sorted_durations", 0.95).alias("p95_duration_s"),
        "avg_latency_s",
        "credits_consumed",
        "gpu_seconds",
    )


def compute_daily_by_model(jobs: DataFrame) -> DataFrame:
    """One row per (``job_date``, ``model``) present in ``jobs``, columns of ``kpi_spark_daily_by_model``."""
    from pyspark.sql import functions as F

    per_model = jobs.groupBy("job_date", "model").agg(
        F.count(F.lit(1)).alias("jobs"),
        _status_count("succeeded").alias("succeeded_jobs"),
        _status_count("failed").alias("failed_jobs"),
        _sorted_values("duration_s").alias("sorted_durations"),
        *_metered_sums(),
    )
    return per_model.select(
        "job_date",
        "model",
        "jobs",
        "succeeded_jobs",
        "failed_jobs",
        _success_rate("succeeded_jobs", "failed_jobs").alias("success_rate"),
        _interpolated("sorted_durations", 0.5).alias("median_duration_s"),
        _interpolated("sorted_durations", 0.95).alias("p95_duration_s"),
        "gpu_seconds",
        "credits_consumed",
    )


def empty_daily_row(day: date, computed_at: datetime) -> dict[str, Any]:
    """The row of a day without jobs: counts and sums 0; rate, durations and latency NULL."""
    return {
        "job_date": day,
        "total_jobs": 0,
        "succeeded_jobs": 0,
        "failed_jobs": 0,
        "rejected_jobs": 0,
        "canceled_jobs": 0,
        "success_rate": None,
        "active_users": 0,
        "avg_duration_s": None,
        "median_duration_s": None,
        "p95_duration_s": None,
        "avg_latency_s": None,
        "credits_consumed": Decimal("0.0000"),
        "gpu_seconds": 0.0,
        "computed_at": computed_at,
    }
