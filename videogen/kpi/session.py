"""Build the SparkSession the KPI jobs run in, from a :class:`~videogen.kpi.config.SparkConfig`.

The same code runs in local mode (default) and on a cluster: only ``master`` and the settings change.
Settings that shape the JVM (``spark.jars``, driver memory) only take effect when the first session
of the process starts it; :func:`build_spark_session` warns when an already running session lacks
the JDBC driver instead of failing later with "No suitable driver".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from videogen.kpi.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# How many SparkContexts (JVM sessions) this process started: the benchmark and the tests read it to
# show that a backfill of many days runs in one session.
sessions_started = 0

# Defaults sized for a day of jobs, not for a data lake: the KPI aggregates are tiny after the first
# stage, and 200 shuffle partitions would cost more in task scheduling than the work itself
# (adaptive execution coalesces further). Everything here can be overridden through `conf`.
_BASE_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
# Local mode only: the driver is the executor, and nobody browses its UI. A KPI run is short, so
# the JVM spends a large share of it warming up: the C1-only JIT and the throughput collector took
# 3-4 s off the session start on 2 cores without slowing the aggregation measurably.
_LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC",
}


def spark_conf(config: SparkConfig) -> dict[str, str]:
    """Every setting the builder applies, in order: defaults, then jars/S3A, then ``config.conf``."""
    conf: dict[str, str] = {"spark.master": config.master, "spark.app.name": config.app_name, **_BASE_CONF}
    if config.is_local:
        conf.update(_LOCAL_CONF)
    jars = [jar for jar in (config.jdbc_jar, *config.extra_jars) if jar]
    if jars:
        conf["spark.jars"] = ",".join(jars)
    if config.parquet_path and config.parquet_path.startswith("s3a://"):
        conf.update(_s3a_conf(config))
    conf.update(config.conf)
    return conf


def _s3a_conf(config: SparkConfig) -> dict[str, str]:
    # The S3A connector itself (hadoop-aws + the AWS SDK bundle, matching Spark's Hadoop version) is
    # not part of pyspark: list its jars in VIDEOGEN_SPARK_JARS. Keys come from the standard AWS
    # environment variables through S3A's default credential chain, never from Spark settings.
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    if config.s3a_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = config.s3a_endpoint
        # MinIO and Ceph serve buckets under the path, not as virtual hosts.
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return conf


def jvm_is_running() -> bool:
    """Whether this process already has a SparkContext (and so a JVM whose jars are fixed)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None  # noqa: SLF001 (no public equivalent)


def build_spark_session(config: SparkConfig) -> SparkSession:
    """Start (or join) the process's SparkSession with ``config``'s settings."""
    from pyspark.sql import SparkSession

    global sessions_started
    already_running = jvm_is_running()
    builder = SparkSession.builder
    for key, value in spark_conf(config).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if already_running:
        loaded = spark.sparkContext.getConf().get("spark.jars", "")
        if config.jdbc_jar and config.jdbc_jar not in loaded:
            log.warning(
                "A SparkSession was already running without %s on its classpath (jars are fixed when "
                "the JVM starts); JDBC reads may fail with 'No suitable driver'.", config.jdbc_jar,
            )
    else:
        sessions_started += 1
        spark.sparkContext.setLogLevel(config.log_level)
    return spark
