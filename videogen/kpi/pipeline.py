"""One KPI materialization: read ``jobs`` → compute → validate → write, for a whole day range.

This is what the Dagster asset and the benchmark call. A range of any length is one JDBC read and
one Spark aggregation per table, collected (a row per day, a few per model), validated by the same
GX rules as the asset checks, then written for all tables in one PostgreSQL transaction.

Validation before the write is the part that keeps a wrong number away from analysts: the asset
checks run after the commit (they can only report), while this gate refuses to replace good rows
with rows that break a rule. Reconciliation with ``jobs`` is left to the checks, since rows keep
arriving for the current day between the read and any later count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from videogen.kpi.compute import compute_daily, compute_daily_by_model, empty_daily_row
from videogen.kpi.config import JdbcSource
from videogen.kpi.dates import DayRange
from videogen.kpi.quality import RuleResult, failures, validate_rows
from videogen.kpi.source import read_jobs
from videogen.kpi.tables import KPI_DAILY, KPI_DAILY_BY_MODEL
from videogen.kpi.writer import replace_days, write_parquet_copy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ALL_TABLES = (KPI_DAILY, KPI_DAILY_BY_MODEL)


class KpiValidationError(RuntimeError):
    """Computed rows broke a data-quality rule; nothing was written."""

    def __init__(self, table_name: str, days: DayRange, results: Sequence[RuleResult]):
        self.table_name = table_name
        self.days = days
        self.results = list(results)
        lines = "\n".join(f"- {result.message()}" for result in self.results)
        super().__init__(f"{table_name} {days}: computed rows break {len(self.results)} rule(s), not written:\n{lines}")


@dataclass
class TableOutcome:
    rows: list[dict[str, Any]]
    deleted: int = 0
    parquet_path: str | None = None
    validation: list[RuleResult] = field(default_factory=list)


@dataclass
class KpiRun:
    days: DayRange
    rows_in_range: int
    jdbc_partitions: int
    computed_at: datetime
    tables: dict[str, TableOutcome]
    timings_s: dict[str, float]


def _timed(timings: dict[str, float], key: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return fn()
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started


def collect_daily(frame: DataFrame, days: DayRange, computed_at: datetime) -> list[dict[str, Any]]:
    """Collect the daily KPIs and add the zero row of every day without jobs."""
    found = {row["job_date"]: {**row.asDict(), "computed_at": computed_at} for row in frame.collect()}
    return [found.get(day) or empty_daily_row(day, computed_at) for day in days]


def collect_by_model(frame: DataFrame, computed_at: datetime) -> list[dict[str, Any]]:
    rows = [{**row.asDict(), "computed_at": computed_at} for row in frame.collect()]
    return sorted(rows, key=lambda row: (row["job_date"], row["model"]))


def run_kpis(
    spark: SparkSession,
    engine: sa.Engine,
    source: JdbcSource,
    days: DayRange,
    *,
    tables: Iterable[str] = ALL_TABLES,
    parquet_path: str | None = None,
    validate_before_write: bool = True,
    max_partitions: int | None = None,
) -> KpiRun:
    tables = [name for name in ALL_TABLES if name in set(tables)]
    timings: dict[str, float] = {}
    computed_at = datetime.now(UTC)
    read = _timed(timings, "plan_read", lambda: read_jobs(spark, source, engine, days, max_partitions=max_partitions))

    outcomes: dict[str, TableOutcome] = {}
    if KPI_DAILY in tables:
        rows = _timed(timings, "read_and_compute", lambda: collect_daily(compute_daily(read.frame), days, computed_at))
        outcomes[KPI_DAILY] = TableOutcome(rows)
    if KPI_DAILY_BY_MODEL in tables:
        rows = _timed(
            timings, "read_and_compute", lambda: collect_by_model(compute_daily_by_model(read.frame), computed_at)
        )
        outcomes[KPI_DAILY_BY_MODEL] = TableOutcome(rows)

    if validate_before_write:
        for table_name, outcome in outcomes.items():
            outcome.validation = _timed(timings, "validate", lambda: validate_rows(table_name, outcome.rows, days))
            broken = failures(outcome.validation)
            if broken:
                raise KpiValidationError(table_name, days, broken)

    deleted = _timed(
        timings, "write", lambda: replace_days(engine, days, {name: o.rows for name, o in outcomes.items()})
    )
    for table_name, outcome in outcomes.items():
        outcome.deleted = deleted[table_name]
        if parquet_path:
            outcome.parquet_path = _timed(
                timings, "parquet", lambda: write_parquet_copy(spark, table_name, outcome.rows, parquet_path)
            )
    return KpiRun(days, read.rows_in_range, read.partitions, computed_at, outcomes, timings)
