"""Pure units: settings, JDBC URL conversion, day ranges, read planning, presentation."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from videogen.kpi.config import JdbcSource, SparkConfig, parse_spark_conf
from videogen.kpi.dates import DayRange
from videogen.kpi.presentation import markdown_table, sparkline, success_rate_sparkline_markdown
from videogen.kpi.session import spark_conf
from videogen.kpi.source import IdBounds, plan_partitions


def test_jdbc_source_from_a_sqlalchemy_url_keeps_the_password_out_of_the_url():
    source = JdbcSource.from_sqlalchemy_url("postgresql+psycopg2://kpi:p%40ss:w0rd@db.internal:6432/videogen?sslmode=require")
    assert source.url == "jdbc:postgresql://db.internal:6432/videogen"
    assert source.properties["user"] == "kpi"
    assert source.properties["password"] == "p@ss:w0rd"
    assert source.properties["driver"] == "org.postgresql.Driver"
    assert source.properties["sslmode"] == "require"
    assert "p@ss" not in repr(source)
    assert JdbcSource.from_sqlalchemy_url("postgresql://u@[::1]/db").url == "jdbc:postgresql://[::1]/db"
    with pytest.raises(ValueError):
        JdbcSource.from_sqlalchemy_url("mysql://u:p@h/db")


def test_spark_config_from_env_and_the_settings_it_produces():
    local = SparkConfig.from_env({})
    conf = spark_conf(local)
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.jars"] == "/usr/share/java/postgresql.jar"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.ui.enabled"] == "false"

    cluster = SparkConfig.from_env({
        "SPARK_MASTER": "k8s://https://kubernetes.default.svc",
        "VIDEOGEN_JDBC_JAR": "local:///opt/spark/jars/postgresql.jar",
        "VIDEOGEN_SPARK_JARS": "local:///opt/spark/jars/hadoop-aws.jar, local:///opt/spark/jars/bundle.jar",
        "VIDEOGEN_SPARK_CONF": '{"spark.executor.instances": 4, "spark.sql.shuffle.partitions": "64"}',
        "VIDEOGEN_KPI_PARQUET_PATH": "s3a://analytics/kpis",
        "VIDEOGEN_S3A_ENDPOINT": "http://minio:9000",
    })
    conf = spark_conf(cluster)
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc"
    assert "spark.ui.enabled" not in conf and "spark.driver.memory" not in conf
    assert conf["spark.jars"].split(",") == [
        "local:///opt/spark/jars/postgresql.jar", "local:///opt/spark/jars/hadoop-aws.jar", "local:///opt/spark/jars/bundle.jar"
    ]
    assert conf["spark.executor.instances"] == "4"
    assert conf["spark.sql.shuffle.partitions"] == "64", "explicit settings win over the defaults"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert not any("secret" in key or "access.key" in key for key in conf)
    with pytest.raises(ValueError, match="JSON object"):
        parse_spark_conf("[1, 2]")


def test_day_ranges():
    days = DayRange.parse("2025-02-27", "2025-03-01")
    assert list(days) == [date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]
    assert (days.start_ts, days.end_ts) == (datetime(2025, 2, 27, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    assert DayRange.from_window(days.start_ts, days.end_ts) == days
    assert len(DayRange.single(date(2025, 1, 1))) == 1
    with pytest.raises(ValueError):
        DayRange(date(2025, 1, 2), date(2025, 1, 1))
    with pytest.raises(ValueError, match="not aligned"):
        DayRange.from_window(datetime(2025, 1, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC))


def test_read_planning():
    assert plan_partitions(IdBounds(None, None, 0), max_partitions=8, rows_per_partition=100) == 1
    assert plan_partitions(IdBounds(1, 1_000_000, 1_000_000), max_partitions=2, rows_per_partition=250_000) == 2
    assert plan_partitions(IdBounds(1, 1_000_000, 10_000), max_partitions=8, rows_per_partition=250_000) == 1
    assert plan_partitions(IdBounds(10, 12, 3), max_partitions=8, rows_per_partition=1) == 3


def test_presentation():
    assert sparkline([0.0, 0.5, 1.0, None]) == "▁▅█·"
    assert sparkline([0.9, 0.9]) == "██"
    md = success_rate_sparkline_markdown([(date(2025, 3, 1), 0.5), (date(2025, 3, 2), None), (date(2025, 3, 3), 1.0)])
    assert "`▁·█`" in md and "latest 100.0%" in md
    table = markdown_table([{"job_date": date(2025, 3, 1), "x": 1.5}, {"job_date": date(2025, 3, 2), "x": None}], ["job_date", "x"])
    assert table.splitlines()[2] == "| 2025-03-02 | ∅ |", "most recent day first"
