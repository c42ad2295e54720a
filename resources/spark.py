"""The SparkSession for the KPI assets, configured from the environment.

pyspark is imported only when an asset asks for a session (``get_session()``), never when the code
location loads. A session this resource started is stopped when the step ends; a session that was
already running in the process (a test's, a notebook's) is reused and left alone.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, PrivateAttr

from videogen.deploy.profile import PRODUCTION
from videogen.deploy.profile import profile_name as load_profile_name
from videogen.deploy.spark import spark_conf_for_profile
from videogen.kpi.config import DEBIAN_JDBC_JAR, DEFAULT_APP_NAME, DEFAULT_MASTER, SparkConfig, parse_spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkSessionResource(dg.ConfigurableResource):
    """Where Spark runs (``local[*]`` by default, a cluster master by configuration) and with what."""

    master: str = Field(default=DEFAULT_MASTER, description="local[*], spark://host:7077, yarn, k8s://https://...")
    app_name: str = Field(default=DEFAULT_APP_NAME)
    jdbc_jar: str = Field(default=DEBIAN_JDBC_JAR, description="PostgreSQL JDBC driver jar (path or URL)")
    extra_jars: str = Field(default="", description="more jars, comma-separated (e.g. hadoop-aws for s3a://)")
    spark_conf_json: str = Field(default="", description='JSON object of Spark settings, e.g. {"spark.executor.memory": "4g"}')
    parquet_path: str = Field(default="", description="base path of the Parquet copies (local or s3a://); empty: none")
    s3a_endpoint: str = Field(default="", description="S3-compatible endpoint for s3a:// paths (MinIO, Ceph)")

    _session: SparkSession | None = PrivateAttr(default=None)
    _owns_session: bool = PrivateAttr(default=False)

    def spark_config(self, env: dict[str, str] | None = None) -> SparkConfig:
        env = dict(os.environ if env is None else env)
        # The production profile brings the cluster settings (Kubernetes image, namespace, service
        # account, JDBC/S3A jars and settings); VIDEOGEN_SPARK_CONF still overrides any of them.
        base = spark_conf_for_profile(env) if load_profile_name(env) == PRODUCTION else {}
        return SparkConfig(
            master=self.master,
            app_name=self.app_name,
            jdbc_jar=self.jdbc_jar,
            extra_jars=tuple(jar.strip() for jar in self.extra_jars.split(",") if jar.strip()),
            conf=MappingProxyType({**base, **parse_spark_conf(self.spark_conf_json)}),
            parquet_path=self.parquet_path or None,
            s3a_endpoint=self.s3a_endpoint or None,
        )

    def get_session(self) -> SparkSession:
        if self._session is None:
            from videogen.kpi.session import build_spark_session, jvm_is_running

            self._owns_session = not jvm_is_running()
            self._session = build_spark_session(self.spark_config())
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None and self._owns_session:
            self._session.stop()
        self._session = None


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    # An EnvVar when the variable is set (resolved at run time, shown as such in the UI, never its
    # value: VIDEOGEN_SPARK_CONF may carry credentials), the default otherwise.
    return dg.EnvVar(name) if os.environ.get(name) else default


def spark_from_env() -> SparkSessionResource:
    return SparkSessionResource(
        master=_env_or("SPARK_MASTER", DEFAULT_MASTER),
        app_name=_env_or("VIDEOGEN_SPARK_APP_NAME", DEFAULT_APP_NAME),
        jdbc_jar=_env_or("VIDEOGEN_JDBC_JAR", DEBIAN_JDBC_JAR),
        extra_jars=_env_or("VIDEOGEN_SPARK_JARS", ""),
        spark_conf_json=_env_or("VIDEOGEN_SPARK_CONF", ""),
        parquet_path=_env_or("VIDEOGEN_KPI_PARQUET_PATH", ""),
        s3a_endpoint=_env_or("VIDEOGEN_S3A_ENDPOINT", ""),
    )
