"""Each data-quality rule fails on a deliberately corrupted partition, and names itself and the day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.kpi.conftest import BUSY, DATASET_DAYS, EMPTY, MIXED, ONLY_REJECTED, insert_jobs, job
from videogen.kpi import pipeline as kpi_pipeline
from videogen.kpi.dates import DayRange
from videogen.kpi.pipeline import KpiValidationError, run_kpis
from videogen.kpi.quality import (
    only_arrivals_after_read,
    read_kpi_rows,
    rule_names,
    validate_rows,
    validate_table,
)
from videogen.kpi.tables import KPI_DAILY, KPI_DAILY_BY_MODEL


@pytest.fixture
def materialized(spark, engine, jdbc, kpi_dataset):
    run_kpis(spark, engine, jdbc, DATASET_DAYS)
    return engine


def failed(results):
    return {result.rule: result for result in results if not result.success}


def test_a_clean_range_passes_every_rule(materialized):
    for table_name in (KPI_DAILY, KPI_DAILY_BY_MODEL):
        results = validate_table(materialized, table_name, DATASET_DAYS)
        assert [r.rule for r in results] == list(rule_names(table_name))
        assert failed(results) == {}
        reconciliation = results[-1]
        assert reconciliation.rule == "total_matches_jobs_count"
        assert reconciliation.observed["expect_column_pair_values_to_be_equal"]["unexpected_count"] == 0


DAILY_CORRUPTIONS = [
    ("counts_non_negative", f"UPDATE kpi_spark_daily SET failed_jobs = -1 WHERE job_date = '{BUSY}'", BUSY),
    ("statuses_within_total", f"UPDATE kpi_spark_daily SET total_jobs = 2 WHERE job_date = '{MIXED}'", MIXED),
    ("success_rate_in_unit_interval", f"UPDATE kpi_spark_daily SET success_rate = 1.5 WHERE job_date = '{MIXED}'", MIXED),
    (
        "median_not_above_p95",
        f"UPDATE kpi_spark_daily SET median_duration_s = p95_duration_s + 1 WHERE job_date = '{BUSY}'",
        BUSY,
    ),
    ("every_day_present", f"DELETE FROM kpi_spark_daily WHERE job_date = '{EMPTY}'", EMPTY),
]


@pytest.mark.parametrize(("rule", "corruption", "day"), DAILY_CORRUPTIONS, ids=[c[0] for c in DAILY_CORRUPTIONS])
def test_each_daily_rule_catches_its_corruption(materialized, rule, corruption, day):
    with materialized.begin() as conn:
        conn.execute(sa.text(corruption))
    broken = failed(validate_table(materialized, KPI_DAILY, DATASET_DAYS))
    # statuses_within_total also breaks the reconciliation (total_jobs changed): both are right.
    expected = {rule} | ({"total_matches_jobs_count"} if rule == "statuses_within_total" else set())
    assert set(broken) == expected
    result = broken[rule]
    assert result.failing_days == (day,)
    assert rule in result.message() and str(day) in result.message()
    assert result.failing_rows and all(row["job_date"] == day for row in result.failing_rows)
    assert result.observed, "GX's observed values are reported"


def test_reconciliation_catches_jobs_the_kpi_did_not_count(materialized):
    insert_jobs(materialized, [job("late", "succeeded", datetime(2025, 3, 12, 9, tzinfo=UTC))])
    broken = failed(validate_table(materialized, KPI_DAILY, DATASET_DAYS))
    assert set(broken) == {"total_matches_jobs_count"}
    (row,) = broken["total_matches_jobs_count"].failing_rows
    assert (row["job_date"], row["kpi_total_jobs"], row["jobs_in_source"]) == (ONLY_REJECTED, 3, 4)
    # The day was closed when it was computed: a wrong number, not "still filling".
    assert not only_arrivals_after_read(broken["total_matches_jobs_count"], ONLY_REJECTED)
    by_model = failed(validate_table(materialized, KPI_DAILY_BY_MODEL, DATASET_DAYS))
    assert set(by_model) == {"total_matches_jobs_count"}
    assert by_model["total_matches_jobs_count"].failing_rows[0]["model"] == "tiny"


def test_reconciliation_on_a_day_still_open_when_computed_is_only_late_arrivals(spark, engine, jdbc):
    today = datetime.now(UTC).date()
    now = datetime.now(UTC)
    insert_jobs(engine, [job("ana", "pending", now - timedelta(minutes=1))])
    run_kpis(spark, engine, jdbc, DayRange.single(today))
    insert_jobs(engine, [job("bob", "pending", now)])
    broken = failed(validate_table(engine, KPI_DAILY, DayRange.single(today)))
    assert only_arrivals_after_read(broken["total_matches_jobs_count"], today)


BY_MODEL_CORRUPTIONS = [
    ("counts_non_negative", f"UPDATE kpi_spark_daily_by_model SET failed_jobs = -1 WHERE job_date = '{MIXED}' AND model = 'tiny'"),
    ("statuses_within_total", f"UPDATE kpi_spark_daily_by_model SET succeeded_jobs = 50 WHERE job_date = '{MIXED}' AND model = 'tiny'"),
    ("success_rate_in_unit_interval", f"UPDATE kpi_spark_daily_by_model SET success_rate = -0.1 WHERE job_date = '{MIXED}' AND model = 'tiny'"),
    ("median_not_above_p95", f"UPDATE kpi_spark_daily_by_model SET p95_duration_s = 0 WHERE job_date = '{MIXED}' AND model = 'tiny'"),
    ("total_matches_jobs_count", f"DELETE FROM kpi_spark_daily_by_model WHERE job_date = '{MIXED}' AND model = 'tiny'"),
]


@pytest.mark.parametrize(("rule", "corruption"), BY_MODEL_CORRUPTIONS, ids=[c[0] for c in BY_MODEL_CORRUPTIONS])
def test_each_by_model_rule_catches_its_corruption(materialized, rule, corruption):
    with materialized.begin() as conn:
        conn.execute(sa.text(corruption))
    broken = failed(validate_table(materialized, KPI_DAILY_BY_MODEL, DATASET_DAYS))
    assert set(broken) == {rule}
    assert broken[rule].failing_days == (MIXED,)
    assert {row["model"] for row in broken[rule].failing_rows} == {"tiny"}


def test_duplicate_days_break_uniqueness(materialized):
    # The primary key keeps PostgreSQL free of duplicates; the rule guards computed rows (the gate).
    rows = read_kpi_rows(materialized, KPI_DAILY, DATASET_DAYS)
    broken = failed(validate_rows(KPI_DAILY, [*rows, rows[0]], DATASET_DAYS))
    assert set(broken) == {"job_date_unique", "every_day_present"}
    assert broken["job_date_unique"].failing_days == (MIXED,)
    models = read_kpi_rows(materialized, KPI_DAILY_BY_MODEL, DATASET_DAYS)
    broken = failed(validate_rows(KPI_DAILY_BY_MODEL, [*models, models[-1]], DATASET_DAYS))
    assert set(broken) == {"job_date_model_unique"}


def test_the_gate_refuses_to_write_rows_that_break_a_rule(spark, engine, jdbc, kpi_dataset, monkeypatch):
    run_kpis(spark, engine, jdbc, DATASET_DAYS)
    good = read_kpi_rows(engine, KPI_DAILY, DATASET_DAYS)
    real_collect = kpi_pipeline.collect_daily

    def corrupted(frame, days, computed_at):
        rows = real_collect(frame, days, computed_at)
        rows[0]["success_rate"] = 7.0  # a bug in the computation
        return rows

    monkeypatch.setattr(kpi_pipeline, "collect_daily", corrupted)
    with pytest.raises(KpiValidationError, match=r"success_rate_in_unit_interval failed on 2025-03-10"):
        run_kpis(spark, engine, jdbc, DATASET_DAYS)
    assert read_kpi_rows(engine, KPI_DAILY, DATASET_DAYS) == good, "the previous rows stay for analysts"
