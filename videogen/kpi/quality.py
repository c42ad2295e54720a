"""Data-quality rules for the KPI tables, run as Great Expectations 1.x suites.

Each rule is one or more GX expectations tagged with the rule's name. The suites run on pandas
frames in an ephemeral GX context (nothing is written to disk), either over the rows of a range
read back from PostgreSQL (the Dagster asset checks) or over freshly computed rows before they are
written (the gate in :mod:`.pipeline`). Two frames are validated:

- ``rows``: the KPI rows themselves, plus a derived ``status_jobs`` column (the sum of the per-status
  counts: GX compares two columns, not a column and a sum);
- ``days`` (reconciliation, daily table) / ``keys`` (by model): one row per day (per day and model),
  outer-joined with a direct ``count(*)`` of ``jobs`` from PostgreSQL, so that a missing KPI row
  shows up as 0 against the real count instead of silently passing.

A :class:`RuleResult` carries what an operator needs: the rule, whether it held, GX's observed
values, and the failing rows (with their ``job_date``), so Dagster can report each day on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from videogen.kpi.dates import DayRange
from videogen.kpi.tables import (
    BY_MODEL_COUNT_COLUMNS,
    DAILY_COUNT_COLUMNS,
    KPI_DAILY,
    KPI_DAILY_BY_MODEL,
    STATUS_COUNT_COLUMNS,
    TABLES,
)

if TYPE_CHECKING:
    import pandas as pd

ROWS = "rows"
RECONCILIATION = "reconciliation"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    frame: str  # ROWS or RECONCILIATION
    columns: tuple[str, ...]  # shown as observed values, next to the row's keys
    expectations: Callable[[Any], list[Any]]  # gx.expectations module -> expectations
    # False: a rule about PostgreSQL's state (reconciliation), skipped by the pre-write gate.
    applies_before_write: bool = True


@dataclass(frozen=True)
class RuleResult:
    rule: str
    description: str
    success: bool
    observed: dict[str, Any]  # per expectation: GX's observed value / unexpected counts
    failing_rows: tuple[dict[str, Any], ...]
    values_by_day: dict[date, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def failing_days(self) -> tuple[date, ...]:
        return tuple(sorted({row["job_date"] for row in self.failing_rows if row.get("job_date")}))

    def passed_on(self, day: date) -> bool:
        return day not in self.failing_days

    def message_for(self, day: date) -> str:
        return f"{self.rule} failed on {day}: {self.description}"

    def message(self) -> str:
        if self.success:
            return f"{self.rule}: passed"
        days = ", ".join(str(day) for day in self.failing_days) or "the range"
        return f"{self.rule} failed on {days}: {self.description}"


# --------------------------------------------------------------------------------------------- rules


def _non_negative(columns: Sequence[str]) -> Callable[[Any], list[Any]]:
    return lambda ge: [ge.ExpectColumnValuesToBeBetween(column=column, min_value=0) for column in columns]


def _statuses_within_total(total: str) -> Callable[[Any], list[Any]]:
    return lambda ge: [
        ge.ExpectColumnPairValuesAToBeGreaterThanB(column_A=total, column_B="status_jobs", or_equal=True)
    ]


def _rate_in_unit_interval(ge: Any) -> list[Any]:
    # NULL (no succeeded or failed job) is a valid rate: GX skips missing values.
    return [ge.ExpectColumnValuesToBeBetween(column="success_rate", min_value=0, max_value=1)]


def _median_not_above_p95(ge: Any) -> list[Any]:
    return [
        ge.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="p95_duration_s", column_B="median_duration_s", or_equal=True,
            ignore_row_if="either_value_is_missing",
        )
    ]


def _reconciles(ge: Any) -> list[Any]:
    return [ge.ExpectColumnPairValuesToBeEqual(column_A="kpi_total_jobs", column_B="jobs_in_source")]


DAILY_RULES: tuple[Rule, ...] = (
    Rule("counts_non_negative", "every count is >= 0", ROWS, DAILY_COUNT_COLUMNS, _non_negative(DAILY_COUNT_COLUMNS)),
    Rule(
        "statuses_within_total",
        "succeeded + failed + rejected + canceled <= total_jobs",
        ROWS, ("total_jobs", "status_jobs"), _statuses_within_total("total_jobs"),
    ),
    Rule("success_rate_in_unit_interval", "success_rate is within [0, 1]", ROWS, ("success_rate",), _rate_in_unit_interval),
    Rule(
        "median_not_above_p95", "median_duration_s <= p95_duration_s", ROWS,
        ("median_duration_s", "p95_duration_s"), _median_not_above_p95,
    ),
    Rule(
        "job_date_unique", "at most one row per job_date", ROWS, (),
        lambda ge: [ge.ExpectColumnValuesToBeUnique(column="job_date")],
    ),
    Rule(
        "every_day_present", "exactly one row for every day of the range (days without jobs included)",
        RECONCILIATION, ("kpi_rows",),
        lambda ge: [ge.ExpectColumnValuesToBeBetween(column="kpi_rows", min_value=1, max_value=1)],
    ),
    Rule(
        "total_matches_jobs_count", "total_jobs equals a direct count(*) of jobs created that day",
        RECONCILIATION, ("kpi_total_jobs", "jobs_in_source", "kpi_computed_at"), _reconciles,
        applies_before_write=False,
    ),
)

BY_MODEL_RULES: tuple[Rule, ...] = (
    Rule("counts_non_negative", "every count is >= 0", ROWS, BY_MODEL_COUNT_COLUMNS, _non_negative(BY_MODEL_COUNT_COLUMNS)),
    Rule(
        "statuses_within_total", "succeeded + failed <= jobs", ROWS, ("jobs", "status_jobs"),
        _statuses_within_total("jobs"),
    ),
    Rule("success_rate_in_unit_interval", "success_rate is within [0, 1]", ROWS, ("success_rate",), _rate_in_unit_interval),
    Rule(
        "median_not_above_p95", "median_duration_s <= p95_duration_s", ROWS,
        ("median_duration_s", "p95_duration_s"), _median_not_above_p95,
    ),
    Rule(
        "job_date_model_unique", "at most one row per (job_date, model)", ROWS, (),
        lambda ge: [ge.ExpectCompoundColumnsToBeUnique(column_list=["job_date", "model"])],
    ),
    Rule(
        "total_matches_jobs_count", "jobs equals a direct count(*) of jobs of that model created that day",
        RECONCILIATION, ("kpi_total_jobs", "jobs_in_source", "kpi_computed_at"), _reconciles,
        applies_before_write=False,
    ),
)

RULES = {KPI_DAILY: DAILY_RULES, KPI_DAILY_BY_MODEL: BY_MODEL_RULES}
KEY_COLUMNS = {KPI_DAILY: ("job_date",), KPI_DAILY_BY_MODEL: ("job_date", "model")}


def rule_names(table_name: str) -> tuple[str, ...]:
    return tuple(rule.name for rule in RULES[table_name])


# ------------------------------------------------------------------------------------------- frames


def read_kpi_rows(engine: sa.Engine, table_name: str, days: DayRange) -> list[dict[str, Any]]:
    table = TABLES[table_name]
    query = sa.select(table).where(table.c.job_date >= days.first, table.c.job_date <= days.last)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(*table.primary_key.columns)).mappings()]


def _plain(value: Any) -> Any:
    """Plain Python scalars for GX and JSON (Decimal → float, NaN/NaT → None, numpy → Python)."""
    if value is None:
        return None
    try:
        if value != value:  # NaN, NaT
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (str, bytes, date)):  # numpy scalars
        return value.item()
    return value


def _rows_frame(table_name: str, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    columns = [column.name for column in TABLES[table_name].columns]
    frame = pd.DataFrame([{k: _plain(v) for k, v in row.items()} for row in rows], columns=columns)
    statuses = STATUS_COUNT_COLUMNS if table_name == KPI_DAILY else ("succeeded_jobs", "failed_jobs")
    frame["status_jobs"] = frame[list(statuses)].sum(axis=1) if len(frame) else pd.Series(dtype="int64")
    return frame


def _reconciliation_frame(
    table_name: str, rows: Sequence[Mapping[str, Any]], source_counts: Mapping[Any, int] | None, days: DayRange
) -> pd.DataFrame:
    import pandas as pd

    totals: dict[Any, int] = {}
    row_counts: dict[Any, int] = {}
    computed_at: dict[Any, Any] = {}
    for row in rows:
        key = row["job_date"] if table_name == KPI_DAILY else (row["job_date"], row["model"])
        totals[key] = totals.get(key, 0) + int(row["total_jobs" if table_name == KPI_DAILY else "jobs"])
        row_counts[key] = row_counts.get(key, 0) + 1
        computed_at[key] = row.get("computed_at")
    if table_name == KPI_DAILY:
        keys: list[Any] = list(days)
    else:
        keys = sorted(set(totals) | set(source_counts or {}))
    records = []
    for key in keys:
        day, model = (key, None) if table_name == KPI_DAILY else key
        record = {
            "job_date": day,
            "kpi_rows": row_counts.get(key, 0),
            "kpi_total_jobs": totals.get(key, 0),
            "kpi_computed_at": computed_at.get(key),
        }
        if table_name == KPI_DAILY_BY_MODEL:
            record["model"] = model
        if source_counts is not None:
            record["jobs_in_source"] = int(source_counts.get(key, 0))
        records.append(record)
    columns = ["job_date", "model"] if table_name == KPI_DAILY_BY_MODEL else ["job_date"]
    columns += ["kpi_rows", "kpi_total_jobs", "kpi_computed_at"]
    columns += ["jobs_in_source"] if source_counts is not None else []
    return pd.DataFrame(records, columns=columns)


# ------------------------------------------------------------------------------------------ running


def _gx_context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In memory, no usage statistics, no progress bars in the Dagster logs.
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _validate_frame(
    context: Any, name: str, frame: pd.DataFrame, rules: Sequence[Rule], key_columns: Sequence[str]
) -> list[RuleResult]:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for rule in rules:
        for expectation in rule.expectations(gx.expectations):
            expectation.meta = {"rule": rule.name}
            suite.add_expectation(expectation)
    batch = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(name)
        .get_batch(batch_parameters={"dataframe": frame})
    )
    validation = batch.validate(suite, result_format={"result_format": "COMPLETE"})

    by_rule: dict[str, list[Any]] = {rule.name: [] for rule in rules}
    for result in validation.results:
        by_rule[result.expectation_config.meta["rule"]].append(result)

    outcomes = []
    for rule in rules:
        shown = [*key_columns, *(c for c in rule.columns if c not in key_columns)]
        observed: dict[str, Any] = {}
        failing_index: set[int] = set()
        success = True
        for result in by_rule[rule.name]:
            config = result.expectation_config
            label = config.type + (f"({config.kwargs['column']})" if "column" in config.kwargs else "")
            details = {
                key: _jsonable(result.result[key])
                for key in ("observed_value", "element_count", "unexpected_count", "partial_unexpected_list")
                if key in result.result
            }
            if result.exception_info and result.exception_info.get("raised_exception"):
                details["exception"] = result.exception_info.get("exception_message")
            observed[label] = details
            success = success and bool(result.success)
            failing_index.update(int(i) for i in result.result.get("unexpected_index_list") or [])
        if not success and not failing_index and len(frame):  # a table-level failure: blame every row
            failing_index = set(range(len(frame)))
        failing_rows = tuple(
            {column: _plain(frame.iloc[i][column]) for column in shown} for i in sorted(failing_index)
        )
        values_by_day: dict[date, list[dict[str, Any]]] = {}
        for record in frame[shown].to_dict("records"):
            values_by_day.setdefault(record["job_date"], []).append({k: _plain(v) for k, v in record.items()})
        outcomes.append(RuleResult(rule.name, rule.description, success, observed, failing_rows, values_by_day))
    return outcomes


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    value = _plain(value)
    return value.isoformat() if isinstance(value, date) else value


def validate_rows(
    table_name: str,
    rows: Sequence[Mapping[str, Any]],
    days: DayRange,
    *,
    source_counts: Mapping[Any, int] | None = None,
) -> list[RuleResult]:
    """Run the table's suites on ``rows`` (the KPI rows of ``days``).

    ``source_counts`` are the direct counts of ``jobs`` (per day, or per (day, model)); without them
    the reconciliation rule is skipped (the pre-write gate validates what Spark computed, not
    PostgreSQL's state, which may have moved since the read).
    """
    rules = RULES[table_name]
    if source_counts is None:
        rules = tuple(rule for rule in rules if rule.applies_before_write)
    context = _gx_context()
    keys = KEY_COLUMNS[table_name]
    rows_rules = [rule for rule in rules if rule.frame == ROWS]
    reconciliation_rules = [rule for rule in rules if rule.frame == RECONCILIATION]
    outcomes = _validate_frame(context, f"{table_name}.{ROWS}", _rows_frame(table_name, rows), rows_rules, keys)
    if reconciliation_rules:
        frame = _reconciliation_frame(table_name, rows, source_counts, days)
        outcomes += _validate_frame(context, f"{table_name}.{RECONCILIATION}", frame, reconciliation_rules, keys)
    order = {rule.name: i for i, rule in enumerate(RULES[table_name])}
    return sorted(outcomes, key=lambda outcome: order[outcome.rule])


def validate_table(engine: sa.Engine, table_name: str, days: DayRange) -> list[RuleResult]:
    """The asset checks' entry point: read the range back from PostgreSQL and run every rule."""
    from videogen.kpi.reference import jobs_per_day, jobs_per_day_and_model

    rows = read_kpi_rows(engine, table_name, days)
    counts: Mapping[Any, int] = (
        jobs_per_day(engine, days) if table_name == KPI_DAILY else jobs_per_day_and_model(engine, days)
    )
    return validate_rows(table_name, rows, days, source_counts=counts)


def failures(results: Sequence[RuleResult]) -> list[RuleResult]:
    return [result for result in results if not result.success]


def only_arrivals_after_read(result: RuleResult, day: date) -> bool:
    """A reconciliation failure on ``day`` that only means "jobs kept arriving after the read".

    True when the day was still open when its row was computed (``computed_at`` before the day's
    end) and PostgreSQL now holds more jobs than the KPI counted, never fewer: the next hourly
    materialization will pick them up, so this is a warning, not a wrong number.
    """
    from datetime import UTC, datetime, time, timedelta

    rows = [row for row in result.failing_rows if row.get("job_date") == day]
    if not rows:
        return False
    day_end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    return all(
        row.get("kpi_computed_at") is not None
        and row["kpi_computed_at"] < day_end
        and row["kpi_total_jobs"] < row["jobs_in_source"]
        for row in rows
    )
