"""Write KPI rows: replace exactly the requested days, in one PostgreSQL transaction.

Spark's JDBC writer is not used on purpose: ``mode("overwrite")`` drops (or truncates) the whole
table, which loses every other day, the analyst grants and the comments, and is not atomic with the
delete. The result of a KPI computation is small (a row per day, a few per model), so it is
collected and written through SQLAlchemy: ``DELETE`` the range, ``INSERT`` the new rows, ``COMMIT``.
Analysts never see a half-written range: until the commit they read the previous rows (MVCC).

Two materializations of overlapping ranges (the hourly schedule and a backfill) serialize on a
``SHARE ROW EXCLUSIVE`` table lock: it conflicts with itself and with other writers but not with
readers, so the second one deletes what the first inserted instead of failing on the primary key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from videogen.kpi.dates import DayRange
from videogen.kpi.tables import KPI_DAILY, KPI_DAILY_BY_MODEL, TABLES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Spark schemas of the Parquet copies (same names and types as the PostgreSQL tables).
SPARK_SCHEMAS = {
    KPI_DAILY: (
        "job_date date, total_jobs bigint, succeeded_jobs bigint, failed_jobs bigint, "
        "rejected_jobs bigint, canceled_jobs bigint, success_rate double, active_users bigint, "
        "avg_duration_s double, median_duration_s double, p95_duration_s double, "
        "avg_latency_s double, credits_consumed decimal(28,4), gpu_seconds double, computed_at timestamp"
    ),
    KPI_DAILY_BY_MODEL: (
        "job_date date, model string, jobs bigint, succeeded_jobs bigint, failed_jobs bigint, "
        "success_rate double, median_duration_s double, p95_duration_s double, gpu_seconds double, "
        "credits_consumed decimal(28,4), computed_at timestamp"
    ),
}


def replace_days(
    engine: sa.Engine, days: DayRange, rows_by_table: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, int]:
    """Make each table hold exactly its ``rows`` for ``days``, all tables in ONE transaction.

    Other days are untouched. Returns the number of rows deleted per table. Raises before touching
    anything if a row lies outside ``days`` (it would otherwise survive the next re-materialization
    of its own day as a duplicate).
    """
    for table_name, rows in rows_by_table.items():
        outside = sorted({row["job_date"] for row in rows if row["job_date"] not in days})
        if outside:
            raise ValueError(f"{table_name}: rows for {outside} are outside the range {days} being replaced")
    deleted: dict[str, int] = {}
    with engine.begin() as conn:
        # Fixed lock order (the order of TABLES) so that two writers never wait on each other crosswise.
        for table_name in (name for name in TABLES if name in rows_by_table):
            table = TABLES[table_name]
            conn.execute(sa.text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))
            deleted[table_name] = conn.execute(
                table.delete().where(table.c.job_date >= days.first, table.c.job_date <= days.last)
            ).rowcount
            rows = rows_by_table[table_name]
            if rows:
                conn.execute(table.insert(), [dict(row) for row in rows])
    return deleted


def write_parquet_copy(
    spark: SparkSession, table_name: str, rows: Sequence[Mapping[str, Any]], base_path: str
) -> str | None:
    """Write ``rows`` under ``<base_path>/<table>/job_date=YYYY-MM-DD/``, replacing those days only.

    Dynamic partition overwrite rewrites the days present in ``rows`` and leaves the others, so a
    copy built day by day (or range by range) stays complete. Returns the table's path.
    """
    if not rows:
        return None
    path = f"{base_path.rstrip('/')}/{table_name}"
    frame = spark.createDataFrame([dict(row) for row in rows], schema=SPARK_SCHEMAS[table_name])
    (
        frame.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("job_date")
        .parquet(path)
    )
    return path
