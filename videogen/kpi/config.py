"""Typed settings for the Spark KPI jobs: where Spark runs and how it reaches PostgreSQL.

Environment variables (all optional):

- ``SPARK_MASTER``: ``local[*]`` (default), ``spark://host:7077``, ``yarn``, ``k8s://https://...``;
- ``VIDEOGEN_SPARK_APP_NAME``: the application name shown by the cluster (default ``videogen-kpis``);
- ``VIDEOGEN_JDBC_JAR``: the PostgreSQL JDBC driver (default: the Debian package's
  ``/usr/share/java/postgresql.jar``); on a cluster, a path every node can read or a URL;
- ``VIDEOGEN_SPARK_JARS``: more jars, comma-separated (hadoop-aws and the AWS SDK for ``s3a://``);
- ``VIDEOGEN_SPARK_CONF``: a JSON object of Spark settings, applied last (overrides the defaults);
- ``VIDEOGEN_KPI_PARQUET_PATH``: where Parquet copies of the KPI tables go (unset: none);
- ``VIDEOGEN_S3A_ENDPOINT``: an S3-compatible endpoint for ``s3a://`` paths (MinIO, Ceph).

Credentials never go into Spark settings here: the database password travels as a JDBC connection
property (not in the URL that Spark logs), S3 keys come from the standard AWS environment variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy.engine import make_url

DEFAULT_MASTER = "local[*]"
DEFAULT_APP_NAME = "videogen-kpis"
DEBIAN_JDBC_JAR = "/usr/share/java/postgresql.jar"
POSTGRES_DRIVER_CLASS = "org.postgresql.Driver"


def parse_spark_conf(raw: str | None) -> dict[str, str]:
    """``VIDEOGEN_SPARK_CONF``: a JSON object; values become strings as Spark wants them."""
    if not raw or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"VIDEOGEN_SPARK_CONF must be a JSON object of Spark settings: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError("VIDEOGEN_SPARK_CONF must be a JSON object, e.g. {\"spark.executor.memory\": \"4g\"}")
    return {str(key): _conf_value(value) for key, value in parsed.items()}


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _split_list(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


@dataclass(frozen=True)
class SparkConfig:
    master: str = DEFAULT_MASTER
    app_name: str = DEFAULT_APP_NAME
    jdbc_jar: str = DEBIAN_JDBC_JAR
    extra_jars: tuple[str, ...] = ()
    conf: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    parquet_path: str | None = None
    s3a_endpoint: str | None = None
    log_level: str = "WARN"

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SparkConfig:
        env = os.environ if env is None else env
        return cls(
            master=env.get("SPARK_MASTER") or DEFAULT_MASTER,
            app_name=env.get("VIDEOGEN_SPARK_APP_NAME") or DEFAULT_APP_NAME,
            jdbc_jar=env.get("VIDEOGEN_JDBC_JAR") or DEBIAN_JDBC_JAR,
            extra_jars=_split_list(env.get("VIDEOGEN_SPARK_JARS")),
            conf=MappingProxyType(parse_spark_conf(env.get("VIDEOGEN_SPARK_CONF"))),
            parquet_path=env.get("VIDEOGEN_KPI_PARQUET_PATH") or None,
            s3a_endpoint=env.get("VIDEOGEN_S3A_ENDPOINT") or None,
        )


@dataclass(frozen=True)
class JdbcSource:
    """A JDBC URL plus connection properties, as ``DataFrameReader.jdbc`` takes them.

    ``driver`` must be named explicitly: without it ``DriverManager`` may not find the PostgreSQL
    driver that ``spark.jars`` loaded in a child class loader ("No suitable driver").
    """

    url: str
    properties: Mapping[str, str]

    def __repr__(self) -> str:  # never print the password
        shown = {k: ("***" if k == "password" else v) for k, v in self.properties.items()}
        return f"JdbcSource(url={self.url!r}, properties={shown!r})"

    @classmethod
    def from_sqlalchemy_url(cls, database_url: str) -> JdbcSource:
        """``postgresql+psycopg2://user:pw@host:port/db?sslmode=require`` → JDBC URL + properties."""
        url = make_url(database_url)
        if not url.drivername.startswith("postgres"):
            raise ValueError(f"expected a PostgreSQL URL, got driver {url.drivername!r}")
        host = url.host or "localhost"
        if ":" in host and not host.startswith("["):  # IPv6 literal
            host = f"[{host}]"
        port = f":{url.port}" if url.port else ""
        # prepareThreshold=-1: binary result transfer from the first execution; floats, dates and
        # bigints then skip text parsing (measured ~10-20% off a 1M-row read).
        properties: dict[str, str] = {"driver": POSTGRES_DRIVER_CLASS, "prepareThreshold": "-1"}
        if url.username:
            properties["user"] = url.username
        if url.password is not None:
            properties["password"] = str(url.password)
        # libpq query options that pgJDBC understands under the same name (sslmode, sslrootcert,
        # application_name, options, ...) pass through as properties.
        for key, value in url.query.items():
            properties[key] = value if isinstance(value, str) else value[-1]
        return cls(url=f"jdbc:postgresql://{host}{port}/{url.database or ''}", properties=MappingProxyType(properties))
