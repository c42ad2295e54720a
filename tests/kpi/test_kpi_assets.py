"""Dagster level: the code location stays light, the assets and checks run on real Spark + PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.kpi import (
    KPI_START_DATE,
    kpi_defs,
    kpi_partitions,
    kpi_spark_daily_by_model_checks,
    kpi_spark_daily_checks,
    kpi_spark_hourly,
    kpi_spark_tables,
)
from resources.database import PostgresResource
from resources.spark import SparkSessionResource, spark_from_env
from tests.kpi.conftest import DATASET_DAYS, EMPTY, MIXED
from videogen.kpi import session as kpi_session
from videogen.kpi.quality import rule_names
from videogen.kpi.tables import KPI_DAILY, KPI_DAILY_BY_MODEL

CHECKS = ("internally_consistent", "reconciles_with_jobs")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": str(DATASET_DAYS.first),
    "dagster/asset_partition_range_end": str(DATASET_DAYS.last),
}
ALL_DEFS = [kpi_spark_tables, kpi_spark_daily_checks, kpi_spark_daily_by_model_checks]


def test_loading_the_definitions_imports_neither_pyspark_nor_great_expectations(repo_root):
    code = (
        "import sys\n"
        "import assets.kpi, resources.spark\n"
        "defs = assets.kpi.kpi_defs\n"
        "assert len(defs.resolve_asset_graph().get_all_asset_keys()) == 2\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'great_expectations', 'py4j'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_definitions_shape():
    graph = kpi_defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {KPI_DAILY, KPI_DAILY_BY_MODEL}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == "kpis"
        assert set(node.kinds) == {"spark", "postgres"}
        assert node.owners and node.description
        assert node.partitions_def == kpi_partitions
    assert kpi_partitions.start.date().isoformat() == KPI_START_DATE
    assert kpi_partitions.timezone == "UTC"
    assert kpi_spark_tables.backfill_policy == dg.BackfillPolicy.single_run()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {(table, check) for table in (KPI_DAILY, KPI_DAILY_BY_MODEL) for check in CHECKS}
    for checks_def in (kpi_spark_daily_checks, kpi_spark_daily_by_model_checks):
        for spec in checks_def.check_specs:
            assert spec.blocking and spec.partitions_def == kpi_partitions
    # Every GX rule belongs to exactly one check.
    for table, checks_def in ((KPI_DAILY, kpi_spark_daily_checks), (KPI_DAILY_BY_MODEL, kpi_spark_daily_by_model_checks)):
        spec_text = " ".join(spec.description for spec in checks_def.check_specs)
        assert all(spec_text.count(rule) == 1 for rule in rule_names(table))
    assert set(kpi_defs.resources) == {"spark", "postgres"}


def test_the_hourly_schedule_requests_yesterday_and_today_in_one_run():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 3, 2, 0, 15, tzinfo=UTC))
    request = kpi_spark_hourly(context)
    assert request.partition_key_range == dg.PartitionKeyRange("2025-03-01", "2025-03-02")
    assert kpi_spark_hourly.cron_schedule == "15 * * * *"
    assert kpi_spark_hourly.execution_timezone == "UTC"
    job = kpi_defs.resolve_job_def(kpi_spark_hourly.job_name)
    assert job.partitions_def == kpi_partitions
    assert {"kpi_spark_tables", "kpi_spark_daily_quality", "kpi_spark_daily_by_model_quality"} <= set(job.graph.node_dict)


def test_the_spark_resource_reads_its_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "spark://spark-master:7077")
    monkeypatch.setenv("VIDEOGEN_SPARK_CONF", json.dumps({"spark.executor.memory": "4g", "spark.ui.enabled": True}))
    monkeypatch.setenv("VIDEOGEN_KPI_PARQUET_PATH", "s3a://kpis/copies")
    monkeypatch.setenv("VIDEOGEN_S3A_ENDPOINT", "http://minio:9000")
    monkeypatch.delenv("VIDEOGEN_JDBC_JAR", raising=False)
    with dg.build_resources({"spark": spark_from_env()}) as resources:
        config = resources.spark.spark_config()
    assert config.master == "spark://spark-master:7077" and not config.is_local
    assert config.jdbc_jar == "/usr/share/java/postgresql.jar"
    assert dict(config.conf) == {"spark.executor.memory": "4g", "spark.ui.enabled": "true"}
    assert config.parquet_path == "s3a://kpis/copies" and config.s3a_endpoint == "http://minio:9000"


def _resources(database_url: str) -> dict:
    return {"spark": SparkSessionResource(master="local[2]"), "postgres": PostgresResource(database_url=database_url)}


def test_materializing_a_partition_range_runs_one_spark_job_and_every_check(spark, database_url, kpi_dataset, engine):
    sessions_before = kpi_session.sessions_started
    with dg.instance_for_test() as instance:
        result = dg.materialize(ALL_DEFS, resources=_resources(database_url), tags=RANGE_TAGS, instance=instance)
        assert result.success

        materializations = result.get_asset_materialization_events()
        assert len(materializations) == 2 * len(DATASET_DAYS), "one materialization per asset and day"
        daily = next(
            m.materialization for m in materializations
            if m.asset_key == dg.AssetKey(KPI_DAILY) and m.partition == str(MIXED)
        )
        metadata = daily.metadata
        assert metadata["dagster/row_count"].value == len(DATASET_DAYS)
        assert metadata["days"].value == str(DATASET_DAYS)
        assert metadata["jobs_read"].value == 257
        assert "| job_date | total_jobs |" in metadata["preview"].value
        assert "| 2025-03-10 | 12 | 5 | 2 | 1 | 1 |" in metadata["preview"].value
        sparkline = metadata["success_rate_30d"].value
        assert "success rate" in sparkline and any(bar in sparkline for bar in "▁▂▃▄▅▆▇█")

        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == len(DATASET_DAYS) * 2 * len(CHECKS), "one evaluation per check and day"
        assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]
        assert {e.partition for e in evaluations} == {str(day) for day in DATASET_DAYS}
        reconciliation = next(
            e for e in evaluations
            if e.check_name == "reconciles_with_jobs" and e.asset_key == dg.AssetKey(KPI_DAILY) and e.partition == str(EMPTY)
        )
        (observed,) = reconciliation.metadata["observed"].value["total_matches_jobs_count"]
        assert observed["kpi_total_jobs"] == observed["jobs_in_source"] == 0
        consistency = next(
            e for e in evaluations
            if e.check_name == "internally_consistent" and e.asset_key == dg.AssetKey(KPI_DAILY) and e.partition == str(MIXED)
        )
        assert consistency.metadata["rules"].value == {
            rule: True for rule in rule_names(KPI_DAILY) if rule != "total_matches_jobs_count"
        }
        assert consistency.metadata["observed"].value["success_rate_in_unit_interval"] == [
            {"job_date": str(MIXED), "success_rate": pytest.approx(5 / 7)}
        ]

        # Dagster's own record: every partition of the range has its check status.
        record = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(KPI_DAILY), "internally_consistent"), limit=10
        )
        assert sorted(r.partition for r in record) == [str(day) for day in DATASET_DAYS]

    # The range ran in the session that was already up, which the resource left running.
    assert kpi_session.sessions_started == sessions_before
    assert spark.sparkContext._jsc is not None and spark.range(1).count() == 1  # noqa: SLF001
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM kpi_spark_daily")).scalar_one() == len(DATASET_DAYS)


def test_a_check_run_on_a_corrupted_partition_fails_and_names_the_rule(spark, database_url, kpi_dataset, engine):
    with dg.instance_for_test() as instance:
        assert dg.materialize(ALL_DEFS, resources=_resources(database_url), tags=RANGE_TAGS, instance=instance).success
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE kpi_spark_daily SET success_rate = 1.5 WHERE job_date = '{MIXED}'"))

        result = dg.materialize(
            ALL_DEFS,
            selection=dg.AssetSelection.checks(kpi_spark_daily_checks),
            resources=_resources(database_url),
            tags={"dagster/partition": str(MIXED)},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success, "a failed blocking check fails the run"
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(CHECKS)
    broken = evaluations["internally_consistent"]
    assert not broken.passed and broken.partition == str(MIXED)
    assert broken.severity == dg.AssetCheckSeverity.ERROR
    assert broken.description.startswith("success_rate_in_unit_interval failed on 2025-03-10")
    assert broken.metadata["failed_rules"].value == "success_rate_in_unit_interval"
    assert broken.metadata["failing_rows"].value == {
        "success_rate_in_unit_interval": [{"job_date": "2025-03-10", "success_rate": 1.5}]
    }
    gx = broken.metadata["gx_results"].value["success_rate_in_unit_interval"]
    assert gx["expect_column_values_to_be_between(success_rate)"]["unexpected_count"] == 1
    assert evaluations["reconciles_with_jobs"].passed
    # The verdicts are also in the application's database, for the platform metrics and their alert.
    with engine.connect() as conn:
        recorded = {(r.check_name, str(r.job_date)): (r.passed, r.severity, r.failed_rules) for r in conn.execute(
            sa.text("SELECT * FROM kpi_check_results WHERE table_name = 'kpi_spark_daily'"))}
    assert recorded[("internally_consistent", str(MIXED))] == (False, "ERROR", "success_rate_in_unit_interval")
    assert recorded[("reconciles_with_jobs", str(MIXED))] == (True, "ERROR", "")
    assert all(passed for (check, day), (passed, _, _) in recorded.items() if day != str(MIXED))


def test_jobs_arriving_after_the_read_of_an_open_day_only_warn(spark, database_url, engine):
    from datetime import timedelta

    from tests.kpi.conftest import insert_jobs, job

    now = datetime.now(UTC)
    today = str(now.date())
    insert_jobs(engine, [job("ana", "pending", now - timedelta(seconds=1))])
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            ALL_DEFS, resources=_resources(database_url), partition_key=today, instance=instance
        ).success
        insert_jobs(engine, [job("bob", "pending", now)])
        result = dg.materialize(
            ALL_DEFS,
            selection=dg.AssetSelection.checks(kpi_spark_daily_checks),
            resources=_resources(database_url),
            tags={"dagster/partition": today},
            instance=instance,
        )
    assert result.success, "a WARN does not block"
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "reconciles_with_jobs")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "jobs arrived after the read" in evaluation.description


def test_the_asset_refuses_a_range_outside_the_partitions(database_url):
    with pytest.raises(Exception, match="before the partitions definition start"):
        dg.materialize(
            ALL_DEFS,
            resources=_resources(database_url),
            tags={"dagster/asset_partition_range_start": "2024-12-31", "dagster/asset_partition_range_end": "2025-01-01"},
        )
