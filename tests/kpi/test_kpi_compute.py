"""Spark KPIs against independent computations, on real Spark (local) and real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.kpi.conftest import (
    BOUNDARIES,
    BUSY,
    DATASET_DAYS,
    EMPTY,
    MIXED,
    ONLY_REJECTED,
    assert_same_kpis,
    expected_by_model,
    expected_daily,
    insert_jobs,
    job,
    percentile_cont,
    ts,
)
from videogen.kpi.dates import DayRange
from videogen.kpi.pipeline import run_kpis
from videogen.kpi.reference import daily_by_model_kpis_sql, daily_kpis_sql
from videogen.kpi.source import read_jobs
from videogen.kpi.tables import BY_MODEL_COLUMNS, DAILY_COLUMNS, KPI_DAILY, KPI_DAILY_BY_MODEL


def test_the_python_oracle_interpolates_like_percentile_cont(engine):
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    with engine.connect() as conn:
        pg = conn.execute(
            sa.text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.95) WITHIN GROUP (ORDER BY v) "
                "FROM unnest(CAST(:v AS float8[])) AS v"
            ),
            {"v": values},
        ).one()
    assert (percentile_cont(values, 0.5), percentile_cont(values, 0.95)) == pytest.approx(tuple(pg))
    assert percentile_cont(values, 0.95) == pytest.approx(4.0 + 0.8 * 6.0)


def test_every_kpi_column_matches_python_and_sql(spark, engine, jdbc, kpi_dataset, kpi_rows):
    run = run_kpis(spark, engine, jdbc, DATASET_DAYS)

    daily = kpi_rows(KPI_DAILY, DATASET_DAYS)
    assert list(daily) == list(DATASET_DAYS), "one row per day, the empty day included"
    assert all(set(row) == set(DAILY_COLUMNS) for row in daily.values())
    python = expected_daily(kpi_dataset, DATASET_DAYS)
    sql = {row["job_date"]: row for row in daily_kpis_sql(engine, DATASET_DAYS)}
    for day in DATASET_DAYS:
        assert_same_kpis(daily[day], python[day], where=f"spark vs python {day}")
        assert_same_kpis(daily[day], sql[day], where=f"spark vs SQL {day}")
        assert daily[day]["computed_at"] == run.computed_at

    by_model = kpi_rows(KPI_DAILY_BY_MODEL, DATASET_DAYS)
    assert all(set(row) == set(BY_MODEL_COLUMNS) for row in by_model.values())
    python_m = expected_by_model(kpi_dataset, DATASET_DAYS)
    sql_m = {(row["job_date"], row["model"]): row for row in daily_by_model_kpis_sql(engine, DATASET_DAYS)}
    assert sorted(by_model) == sorted(python_m) == sorted(sql_m)
    for key in by_model:
        assert_same_kpis(by_model[key], python_m[key], where=f"spark vs python {key}")
        assert_same_kpis(by_model[key], sql_m[key], where=f"spark vs SQL {key}")
    # The two tables agree with each other.
    for day in DATASET_DAYS:
        assert sum(r["jobs"] for k, r in by_model.items() if k[0] == day) == daily[day]["total_jobs"]


def test_edge_days(spark, engine, jdbc, kpi_dataset, kpi_rows):
    run_kpis(spark, engine, jdbc, DATASET_DAYS, tables=[KPI_DAILY])
    daily = kpi_rows(KPI_DAILY, DATASET_DAYS)

    mixed = daily[MIXED]
    # 12 jobs, every status; the job created at 23:59:50 and finished after midnight counts here,
    # the one at 23:59:59.999999 the day before does not.
    assert (mixed["total_jobs"], mixed["succeeded_jobs"], mixed["failed_jobs"]) == (12, 5, 2)
    assert (mixed["rejected_jobs"], mixed["canceled_jobs"], mixed["active_users"]) == (1, 1, 6)
    assert mixed["success_rate"] == pytest.approx(5 / 7)
    # 4 durations (the succeeded job without started_at has none): 30.000001, 60.25, 150, 205.
    assert mixed["median_duration_s"] == pytest.approx((60.25 + 150.0) / 2)
    assert mixed["p95_duration_s"] == pytest.approx(150.0 + 0.85 * (205.0 - 150.0))
    assert mixed["avg_duration_s"] == pytest.approx((30.000001 + 60.25 + 150.0 + 205.0) / 4)
    assert mixed["credits_consumed"] == Decimal("9.2944")
    assert mixed["gpu_seconds"] == pytest.approx(55.5 + 140.0 + 7.0 + 1.5 + 200.25)

    empty = daily[EMPTY]
    assert [empty[c] for c in ("total_jobs", "succeeded_jobs", "failed_jobs", "rejected_jobs", "canceled_jobs",
                               "active_users")] == [0] * 6
    assert [empty[c] for c in ("success_rate", "avg_duration_s", "median_duration_s", "p95_duration_s",
                               "avg_latency_s")] == [None] * 5
    assert (empty["credits_consumed"], empty["gpu_seconds"]) == (Decimal("0"), 0.0)

    rejected = daily[ONLY_REJECTED]
    assert (rejected["total_jobs"], rejected["rejected_jobs"], rejected["active_users"]) == (3, 3, 2)
    assert rejected["success_rate"] is None and rejected["median_duration_s"] is None
    assert (rejected["credits_consumed"], rejected["gpu_seconds"]) == (Decimal("0"), 0.0)

    boundaries = daily[BOUNDARIES]
    # Midnight exactly + the 01:30+02:00 job of the next local day (23:30 UTC).
    assert (boundaries["total_jobs"], boundaries["canceled_jobs"]) == (2, 1)
    assert boundaries["median_duration_s"] == boundaries["p95_duration_s"] == pytest.approx(600.0)
    assert boundaries["success_rate"] == 1.0

    assert daily[BUSY]["total_jobs"] == 240


def test_jdbc_read_pushes_the_range_down_and_splits_on_id(spark, engine, jdbc, kpi_dataset):
    read = read_jobs(spark, jdbc, engine, DayRange.single(BUSY), max_partitions=4, rows_per_partition=50)
    assert (read.rows_in_range, read.partitions) == (240, 4)
    assert read.frame.rdd.getNumPartitions() == 4
    assert read.frame.count() == 240
    plan = read.frame._jdf.queryExecution().toString()  # noqa: SLF001
    assert "created_at >= TIMESTAMPTZ '2025-03-14T00:00:00+00:00'" in plan
    assert "created_at < TIMESTAMPTZ '2025-03-15T00:00:00+00:00'" in plan
    empty = read_jobs(spark, jdbc, engine, DayRange.single(EMPTY))
    assert (empty.rows_in_range, empty.partitions, empty.frame.count()) == (0, 1, 0)


def test_rematerializing_a_day_replaces_its_row_only(spark, engine, jdbc, kpi_dataset, kpi_rows):
    first = run_kpis(spark, engine, jdbc, DATASET_DAYS)
    before = kpi_rows(KPI_DAILY, DATASET_DAYS)
    before_models = kpi_rows(KPI_DAILY_BY_MODEL, DATASET_DAYS)

    again = run_kpis(spark, engine, jdbc, DayRange.single(MIXED))
    assert again.tables[KPI_DAILY].deleted == 1
    after = kpi_rows(KPI_DAILY, DATASET_DAYS)
    assert list(after) == list(DATASET_DAYS)
    assert after[MIXED]["computed_at"] > first.computed_at
    assert {k: v for k, v in after[MIXED].items() if k != "computed_at"} == {
        k: v for k, v in before[MIXED].items() if k != "computed_at"
    }
    for day in DATASET_DAYS:
        if day != MIXED:
            assert after[day] == before[day], "other days untouched"
    assert kpi_rows(KPI_DAILY_BY_MODEL, DATASET_DAYS).keys() == before_models.keys()

    # Late-arriving jobs: a re-materialization picks them up.
    insert_jobs(engine, [
        job("late", "succeeded", ts("2025-03-10T20:00:00+00:00"), model="brand-new", started=ts("2025-03-10T20:00:00+00:00"),
            finished=ts("2025-03-10T20:16:40+00:00"), credits="1.0000"),
        job("late", "failed", ts("2025-03-11T12:00:00+00:00")),
    ])
    run_kpis(spark, engine, jdbc, DayRange(MIXED, EMPTY))
    late = kpi_rows(KPI_DAILY, DATASET_DAYS)
    assert (late[MIXED]["total_jobs"], late[MIXED]["succeeded_jobs"], late[MIXED]["active_users"]) == (13, 6, 7)
    assert late[MIXED]["credits_consumed"] == Decimal("10.2944")
    assert (late[EMPTY]["total_jobs"], late[EMPTY]["failed_jobs"], late[EMPTY]["success_rate"]) == (1, 1, 0.0)
    models = kpi_rows(KPI_DAILY_BY_MODEL, DATASET_DAYS)
    assert models[(MIXED, "brand-new")]["median_duration_s"] == pytest.approx(1000.0)


def test_backfill_replaces_exactly_the_range(spark, engine, jdbc, kpi_dataset, kpi_rows):
    outside_days = [date(2025, 3, 9), date(2025, 3, 15)]
    stale_now = datetime(2020, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        # A stale row for the empty day and rows outside the range that must survive as they are.
        for day in [EMPTY, *outside_days]:
            conn.execute(
                sa.text(
                    "INSERT INTO kpi_spark_daily (job_date, total_jobs, succeeded_jobs, failed_jobs, rejected_jobs, "
                    "canceled_jobs, active_users, credits_consumed, gpu_seconds, computed_at) "
                    "VALUES (:d, 99, 0, 0, 0, 0, 1, 0, 0, :now)"
                ),
                {"d": day, "now": stale_now},
            )
        conn.execute(
            sa.text(
                "INSERT INTO kpi_spark_daily_by_model (job_date, model, jobs, succeeded_jobs, failed_jobs, "
                "gpu_seconds, credits_consumed, computed_at) VALUES (:d, 'gone', 5, 0, 0, 0, 0, :now)"
            ),
            {"d": EMPTY, "now": stale_now},
        )
    run = run_kpis(spark, engine, jdbc, DATASET_DAYS)
    assert run.tables[KPI_DAILY].deleted == 1
    assert run.tables[KPI_DAILY_BY_MODEL].deleted == 1

    daily = kpi_rows(KPI_DAILY, DayRange(date(2025, 3, 1), date(2025, 3, 31)))
    assert sorted(daily) == sorted([*DATASET_DAYS, *outside_days])
    assert daily[EMPTY]["total_jobs"] == 0
    for day in outside_days:
        assert (daily[day]["total_jobs"], daily[day]["computed_at"]) == (99, stale_now)
    assert (EMPTY, "gone") not in kpi_rows(KPI_DAILY_BY_MODEL, DATASET_DAYS)


def test_parquet_copies_replace_the_days_they_hold(spark, engine, jdbc, kpi_dataset, tmp_path):
    base = str(tmp_path / "kpis")
    run = run_kpis(spark, engine, jdbc, DATASET_DAYS, parquet_path=base)
    path = run.tables[KPI_DAILY].parquet_path
    assert path == f"{base}/{KPI_DAILY}"
    assert spark.read.parquet(path).count() == len(DATASET_DAYS)
    run_kpis(spark, engine, jdbc, DayRange.single(MIXED), parquet_path=base)
    copy = {row["job_date"]: row for row in spark.read.parquet(path).collect()}
    assert sorted(copy) == list(DATASET_DAYS), "re-writing one day keeps the others"
    assert copy[MIXED]["total_jobs"] == 12 and copy[MIXED]["credits_consumed"] == Decimal("9.2944")
    by_model = spark.read.parquet(f"{base}/{KPI_DAILY_BY_MODEL}")
    assert by_model.where(f"job_date = '{MIXED}'").count() == 4


def test_writer_refuses_rows_outside_the_range(engine):
    from videogen.kpi.compute import empty_daily_row
    from videogen.kpi.writer import replace_days

    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="outside the range"):
        replace_days(engine, DayRange.single(MIXED), {KPI_DAILY: [empty_daily_row(MIXED + timedelta(days=1), now)]})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM kpi_spark_daily")).scalar_one() == 0
