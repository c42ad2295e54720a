"""Read the ``jobs`` rows of a day range into Spark over JDBC.

Three things keep this read cheap:

- the date range is pushed down: Spark's source is a subquery with
  ``created_at >= start AND created_at < end`` (the ``jobs_created_at_idx`` index), never the table;
- only the columns the KPIs need travel, and the per-row derivations that depend on time-zone
  handling (UTC day, durations in seconds) are done by PostgreSQL, where ``timestamptz`` arithmetic
  is exact, so Spark's session time zone can never shift a job to the wrong day;
- the read is split on ``id`` into parallel JDBC queries, with bounds from one cheap
  ``min/max/count`` query over the same range (Spark's first and last splits are open-ended, so a
  row is never lost even if ids and ``created_at`` are not in the same order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from videogen.kpi.config import JdbcSource
from videogen.kpi.dates import DayRange

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# One JDBC query per this many rows, at most `max_partitions` queries.
DEFAULT_ROWS_PER_PARTITION = 250_000
DEFAULT_FETCH_SIZE = 20_000

_JOBS_FOR_KPIS = """
SELECT id,
       user_id,
       model,
       status,
       (created_at AT TIME ZONE 'UTC')::date AS job_date,
       EXTRACT(EPOCH FROM (finished_at - started_at))::float8 AS duration_s,
       EXTRACT(EPOCH FROM (finished_at - created_at))::float8 AS latency_s,
       gpu_seconds,
       credits
FROM jobs
WHERE created_at >= TIMESTAMPTZ '{start}' AND created_at < TIMESTAMPTZ '{end}'
"""


def jobs_query(days: DayRange) -> str:
    """The pushed-down query (literals come from `date` objects, never from user text)."""
    return _JOBS_FOR_KPIS.format(start=days.start_ts.isoformat(), end=days.end_ts.isoformat())


@dataclass(frozen=True)
class IdBounds:
    low: int | None
    high: int | None
    rows: int


def id_bounds(engine: sa.Engine, days: DayRange) -> IdBounds:
    with engine.connect() as conn:
        low, high, rows = conn.execute(
            sa.text("SELECT min(id), max(id), count(*) FROM jobs WHERE created_at >= :start AND created_at < :end"),
            {"start": days.start_ts, "end": days.end_ts},
        ).one()
    return IdBounds(low, high, rows)


def plan_partitions(bounds: IdBounds, *, max_partitions: int, rows_per_partition: int) -> int:
    if bounds.rows == 0 or bounds.low is None or bounds.high is None or bounds.low == bounds.high:
        return 1
    wanted = math.ceil(bounds.rows / rows_per_partition)
    return max(1, min(max_partitions, wanted, bounds.high - bounds.low + 1))


@dataclass(frozen=True)
class JobsRead:
    frame: DataFrame
    rows_in_range: int  # from the bounds query, before Spark read anything
    partitions: int


def read_jobs(
    spark: SparkSession,
    source: JdbcSource,
    engine: sa.Engine,
    days: DayRange,
    *,
    max_partitions: int | None = None,
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
    fetch_size: int = DEFAULT_FETCH_SIZE,
) -> JobsRead:
    """A lazy DataFrame of the jobs created in ``days`` (columns of :func:`jobs_query`)."""
    bounds = id_bounds(engine, days)
    if max_partitions is None:
        max_partitions = max(1, spark.sparkContext.defaultParallelism)
    partitions = plan_partitions(bounds, max_partitions=max_partitions, rows_per_partition=rows_per_partition)
    reader = (
        spark.read.format("jdbc")
        .option("url", source.url)
        .option("dbtable", f"({jobs_query(days)}) AS jobs_in_range")
        .option("fetchsize", str(fetch_size))
        .options(**dict(source.properties))
    )
    if partitions > 1:
        reader = (
            reader.option("partitionColumn", "id")
            .option("lowerBound", str(bounds.low))
            .option("upperBound", str(bounds.high + 1))
            .option("numPartitions", str(partitions))
        )
    return JobsRead(frame=reader.load(), rows_in_range=bounds.rows, partitions=partitions)
