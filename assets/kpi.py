"""Daily KPI tables (``kpi_spark_daily``, ``kpi_spark_daily_by_model``), their checks and schedule.

Thin Dagster over :mod:`videogen.kpi`: the asset turns the partition range it is given into a
:class:`~videogen.kpi.dates.DayRange` and calls :func:`~videogen.kpi.pipeline.run_kpis`; the checks
call :func:`~videogen.kpi.quality.validate_table`. Nothing here imports pyspark or
great_expectations (a test loads this module in a fresh interpreter and looks).

- Partitions: one per UTC day from a fixed ``KPI_START_DATE`` (2025-01-01; days before the first
  job are simply zero rows) to today included (``end_offset=1``: today's partition is "today so
  far"). Moving the start later hides history in the UI but never deletes rows.
- Backfills: ``BackfillPolicy.single_run()``, a range launched from the UI is ONE run, one Spark
  session, one JDBC read per table, one transaction; a year of days takes about as long as a few.
- Both tables come from one ``multi_asset`` (``can_subset``) so they share the session and the range.
- Checks: one ``multi_asset_check`` per table with two partitioned, blocking checks, each running a
  group of GX rules: ``internally_consistent`` and ``reconciles_with_jobs``. Each day of the range
  gets its own evaluation naming the rules that failed, so a backfill of 365 days shows which day
  failed and why; a reconciliation mismatch on a day that was still open when computed is a WARN
  (jobs kept arriving; the hourly run catches up), anything else an ERROR.
- Late rows: ``kpi_spark_hourly`` re-materializes yesterday and today every hour; older days are
  re-materialized by a backfill, which the failing reconciliation check points to.
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from resources.database import PostgresResource, postgres_from_env
from resources.spark import SparkSessionResource, spark_from_env
from videogen.kpi.config import JdbcSource
from videogen.kpi.dates import DayRange
from videogen.kpi.pipeline import KpiRun, run_kpis
from videogen.kpi.presentation import markdown_table, success_rate_history, success_rate_sparkline_markdown
from videogen.kpi.quality import RULES, RuleResult, only_arrivals_after_read, validate_table
from videogen.kpi.tables import (
    BY_MODEL_COLUMNS,
    DAILY_COLUMNS,
    KPI_DAILY,
    KPI_DAILY_BY_MODEL,
    TABLES,
    record_check_results,
)

KPI_START_DATE = "2025-01-01"
# The run tags with which Dagster (and its single-run backfills) hand a partition range to a run.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
OWNERS = ["team:data-platform"]
GROUP = "kpis"
KINDS = {"spark", "postgres"}

kpi_partitions = dg.DailyPartitionsDefinition(start_date=KPI_START_DATE, timezone="UTC", end_offset=1)

_PREVIEW_COLUMNS = {
    KPI_DAILY: [c for c in DAILY_COLUMNS if c != "computed_at"],
    KPI_DAILY_BY_MODEL: [c for c in BY_MODEL_COLUMNS if c != "computed_at"],
}
_TABLE_DESCRIPTIONS = {
    KPI_DAILY: (
        "Daily job KPIs per UTC day (SPEC §6): counts per status, success rate, active users, exact "
        "median/p95 durations, latency, credits and GPU seconds. One row per day, days without jobs "
        "included. Computed by Spark from `jobs` over JDBC; re-materializing a day replaces its row."
    ),
    KPI_DAILY_BY_MODEL: (
        "Daily job KPIs per UTC day and model: jobs, success rate, exact median/p95 durations, GPU "
        "seconds and credits. Days without jobs have no rows."
    ),
}


def _column_schema(table_name: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(column.name, str(column.type).lower(), description=column.comment)
            for column in TABLES[table_name].columns
        ]
    )


def _spec(table_name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=table_name,
        description=_TABLE_DESCRIPTIONS[table_name],
        group_name=GROUP,
        kinds=KINDS,
        owners=OWNERS,
        partitions_def=kpi_partitions,
        metadata={"dagster/column_schema": _column_schema(table_name), "dagster/table_name": table_name},
    )


def days_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> DayRange:
    window = context.partition_time_window
    return DayRange.from_window(window.start, window.end)


def _materialization_metadata(run: KpiRun, table_name: str, spark: SparkSessionResource, engine: Any) -> dict:
    outcome = run.tables[table_name]
    metadata: dict[str, Any] = {
        "dagster/row_count": len(outcome.rows),
        "days": str(run.days),
        "rows_replaced": outcome.deleted,
        "jobs_read": run.rows_in_range,
        "jdbc_partitions": run.jdbc_partitions,
        "spark_master": spark.master,
        "computed_at": run.computed_at.isoformat(),
        "timings_s": dg.MetadataValue.json({k: round(v, 3) for k, v in run.timings_s.items()}),
        "preview": dg.MetadataValue.md(markdown_table(outcome.rows, _PREVIEW_COLUMNS[table_name])),
    }
    if table_name == KPI_DAILY:
        history = success_rate_history(engine, run.days.last)
        metadata["success_rate_30d"] = dg.MetadataValue.md(success_rate_sparkline_markdown(history))
    if outcome.parquet_path:
        metadata["parquet_path"] = dg.MetadataValue.path(outcome.parquet_path)
    return metadata


@dg.multi_asset(
    name="kpi_spark_tables",
    specs=[_spec(KPI_DAILY), _spec(KPI_DAILY_BY_MODEL)],
    partitions_def=kpi_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def kpi_spark_tables(
    context: dg.AssetExecutionContext, spark: SparkSessionResource, postgres: PostgresResource
) -> Iterator[dg.MaterializeResult]:
    """Compute the selected KPI tables for the run's partition range and replace those days."""
    days = days_of(context)
    tables = [key.path[-1] for key in context.selected_asset_keys]
    context.log.info("Computing %s for %s (%d day(s)) with Spark master %s", tables, days, len(days), spark.master)
    engine = postgres.get_engine()
    run = run_kpis(
        spark.get_session(),
        engine,
        JdbcSource.from_sqlalchemy_url(postgres.database_url),
        days,
        tables=tables,
        parquet_path=spark.parquet_path or None,
    )
    for table_name in run.tables:
        yield dg.MaterializeResult(
            asset_key=table_name, metadata=_materialization_metadata(run, table_name, spark, engine)
        )


# -------------------------------------------------------------------------------------------- checks


# Two checks per table, each a group of GX rules (see videogen.kpi.quality):
# - internally_consistent: the rules a computation can break on its own (counts, rates, durations,
#   one row per day); the same rules gate the write, so a failure here means the table was edited;
# - reconciles_with_jobs: the KPI total against a direct count of `jobs`, i.e. PostgreSQL's state.
# Every day of a range gets its own evaluation (per-partition status in the UI). One check per rule
# would be 13 evaluations per day: a 365-day backfill spent ~2 minutes just storing them.
CONSISTENCY_CHECK = "internally_consistent"
RECONCILIATION_CHECK = "reconciles_with_jobs"


def _rules_of(table_name: str, check_name: str) -> tuple[str, ...]:
    reconciliation = check_name == RECONCILIATION_CHECK
    return tuple(rule.name for rule in RULES[table_name] if rule.applies_before_write != reconciliation)


def _check_specs(table_name: str) -> list[dg.AssetCheckSpec]:
    descriptions = {
        CONSISTENCY_CHECK: "GX suite on the day's rows read back from PostgreSQL: ",
        RECONCILIATION_CHECK: "GX suite comparing the day's total with a direct count(*) of jobs: ",
    }
    # Partitioned asset checks are a "preview" feature in Dagster 1.13; we rely on them knowingly
    # (tests cover them) and keep the warning out of every code-location load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                check_name,
                asset=table_name,
                description=descriptions[check_name] + ", ".join(_rules_of(table_name, check_name)),
                blocking=True,
                partitions_def=kpi_partitions,
            )
            for check_name in (CONSISTENCY_CHECK, RECONCILIATION_CHECK)
        ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _day_evaluation(
    table_name: str, check_name: str, results: list[RuleResult], day: date, days: DayRange
) -> dg.AssetCheckEvaluation:
    broken = [result for result in results if not result.passed_on(day)]
    severity = dg.AssetCheckSeverity.ERROR
    if not broken:
        description = f"{day}: " + ", ".join(result.rule for result in results) + " hold"
    else:
        description = "; ".join(result.message_for(day) for result in broken)
        if all(r.rule == "total_matches_jobs_count" and only_arrivals_after_read(r, day) for r in broken):
            severity = dg.AssetCheckSeverity.WARN
            description += " (jobs arrived after the read; the hourly materialization will pick them up)"
    metadata: dict[str, Any] = {
        "rules": dg.MetadataValue.json({result.rule: result.passed_on(day) for result in results}),
        "failed_rules": ", ".join(result.rule for result in broken) or "none",
        "observed": dg.MetadataValue.json(
            _jsonable({result.rule: result.values_by_day.get(day, []) for result in results})
        ),
        "checked_range": str(days),
    }
    if broken:
        metadata["failing_rows"] = dg.MetadataValue.json(
            _jsonable({r.rule: [row for row in r.failing_rows if row.get("job_date") == day] for r in broken})
        )
        metadata["gx_results"] = dg.MetadataValue.json(_jsonable({r.rule: r.observed for r in broken}))
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(table_name),
        check_name=check_name,
        passed=not broken,
        severity=severity,
        description=description,
        metadata=metadata,
        blocking=True,
        partition=day.isoformat(),
    )


def _evaluate(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, table_name: str, checks_def: Any
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    # Dagster records an AssetCheckResult of a range run without a partition; emitting one
    # evaluation per day (then the step's output) gives every partition its own status in the UI.
    days = days_of(context)
    results = {result.rule: result for result in validate_table(postgres.get_engine(), table_name, days)}
    for result in results.values():
        if not result.success:
            context.log.warning(result.message())
    verdicts = []
    for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
        check_results = [results[rule] for rule in _rules_of(table_name, key.name)]
        for day in days:
            evaluation = _day_evaluation(table_name, key.name, check_results, day, days)
            verdicts.append({"table_name": table_name, "check_name": key.name, "job_date": day,
                             "passed": evaluation.passed, "severity": evaluation.severity.value,
                             "failed_rules": ", ".join(r.rule for r in check_results if not r.passed_on(day))})
            yield evaluation
        yield dg.Output(None, output_name=checks_def.get_output_name_for_asset_check_key(key))
    # Also in the application's database: the platform metrics (and their alert) read it from there.
    record_check_results(postgres.get_engine(), verdicts)


@dg.multi_asset_check(name="kpi_spark_daily_quality", specs=_check_specs(KPI_DAILY), can_subset=True)
def kpi_spark_daily_checks(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    """Great Expectations suite on the range's rows of kpi_spark_daily, read back from PostgreSQL."""
    yield from _evaluate(context, postgres, KPI_DAILY, kpi_spark_daily_checks)


@dg.multi_asset_check(name="kpi_spark_daily_by_model_quality", specs=_check_specs(KPI_DAILY_BY_MODEL), can_subset=True)
def kpi_spark_daily_by_model_checks(context: dg.AssetCheckExecutionContext, postgres: PostgresResource):
    """Great Expectations suite on the range's rows of kpi_spark_daily_by_model, read back from PostgreSQL."""
    yield from _evaluate(context, postgres, KPI_DAILY_BY_MODEL, kpi_spark_daily_by_model_checks)


# ---------------------------------------------------------------------------------------- schedule


def yesterday_and_today(now: datetime) -> tuple[str, str]:
    today = now.astimezone(UTC).date()
    return (today - timedelta(days=1)).isoformat(), today.isoformat()


@dg.schedule(
    name="kpi_spark_hourly",
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.assets(kpi_spark_tables),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: recompute yesterday and today so far (one run, one Spark session), "
    "so that late-arriving jobs land in the KPIs within the hour.",
)
def kpi_spark_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    tick = context.scheduled_execution_time or datetime.now(UTC)
    first, last = yesterday_and_today(tick)
    return dg.RunRequest(
        run_key=f"kpi-{tick.astimezone(UTC).isoformat()}",
        tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last},
    )


kpi_defs = dg.Definitions(
    assets=[kpi_spark_tables],
    asset_checks=[kpi_spark_daily_checks, kpi_spark_daily_by_model_checks],
    schedules=[kpi_spark_hourly],
    resources={"spark": spark_from_env(), "postgres": postgres_from_env()},
)
