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

from videogen.config import env_var, load_settings, parse_spark_conf, setting_default, split_list
from videogen.deploy.profile import PRODUCTION
from videogen.deploy.profile import profile_name as load_profile_name
from videogen.deploy.spark import spark_conf_for_profile
from videogen.kpi.config import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkSessionResource(dg.ConfigurableResource):
    """Where Spark runs (``local[*]`` by default, a cluster master by configuration) and with what.

    The defaults are :class:`videogen.config.Settings`'; :func:`spark_from_env` passes the loaded values.
    """

    master: str = Field(default=setting_default("spark_master"),
                        description="local[*], spark://host:7077, yarn, k8s://https://...")
    app_name: str = Field(default=setting_default("spark_app_name"))
    jdbc_jar: str = Field(default=setting_default("jdbc_jar"), description="PostgreSQL JDBC driver jar (path or URL)")
    extra_jars: str = Field(default=",".join(setting_default("spark_jars")),
                            description="more jars, comma-separated (e.g. hadoop-aws for s3a://)")
    spark_conf_json: str = Field(default="", description='JSON object of Spark settings, e.g. {"spark.executor.memory": "4g"}')
    parquet_path: str = Field(default=setting_default("kpi_parquet_path") or "",
                              description="base path of the Parquet copies (local or s3a://); empty: none")
    s3a_endpoint: str = Field(default=setting_default("s3a_endpoint") or "",
                              description="S3-compatible endpoint for s3a:// paths (MinIO, Ceph)")

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
            extra_jars=split_list(self.extra_jars),
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


def spark_from_env() -> SparkSessionResource:
    """The resource from :func:`videogen.config.load_settings` (the one reader of the Spark variables)."""
    settings = load_settings()
    return SparkSessionResource(
        master=settings.spark_master,
        app_name=settings.spark_app_name,
        jdbc_jar=settings.jdbc_jar,
        extra_jars=",".join(settings.spark_jars),
        # VIDEOGEN_SPARK_CONF may carry credentials: an EnvVar (resolved at run time, shown as such in
        # the UI, never its value) once load_settings() has validated it.
        spark_conf_json=dg.EnvVar(env_var("spark_conf")) if settings.spark_conf else "",
        parquet_path=settings.kpi_parquet_path or "",
        s3a_endpoint=settings.s3a_endpoint or "",
    )
