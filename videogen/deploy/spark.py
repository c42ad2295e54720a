"""Spark settings for the KPI assets, local or on a Kubernetes cluster, from an env mapping.

The KPI code (``videogen/kpi``) builds its SparkSession from a settings dict; in production those
settings come from :func:`spark_conf_for_profile`, so the same asset code runs on a cluster by
configuration only::

    SparkConfig.from_env(env) with conf = {**spark_conf_for_profile(env), **VIDEOGEN_SPARK_CONF}

Cluster layout (client mode): the Dagster run pod of a KPI run is the Spark driver; Spark creates
executor pods from the same CPU image (Java 17, pyspark 4.1.4 and the PostgreSQL JDBC driver from
Debian's ``libpostgresql-jdbc-java``) under the ``spark`` service account of
``k8s/manifests/spark-rbac.yaml``. Executors reach the driver at its pod IP, which
:func:`spark_driver_k8s_config` puts in ``VIDEOGEN_SPARK_DRIVER_HOST`` through the downward API.

No secret value ever enters the returned dict (it may be logged): S3A reads the AWS keys from the
environment (``EnvironmentVariableCredentialsProvider``); executor pods get them from the
``videogen-s3`` Secret by reference (``spark.kubernetes.executor.secretKeyRef.*``), and the database
password travels as a JDBC connection property (``videogen.kpi.config.JdbcSource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from videogen.config import Settings, env_var, load_settings
from videogen.deploy.profile import LOCAL, profile_name

# hadoop-aws and the AWS SDK v2 bundle it was built against (Hadoop 3.4.2 = pyspark 4.1.4's Hadoop
# client), downloaded into the cpu image by the Dockerfile.
IMAGE_S3A_JARS = ("/opt/videogen/jars/hadoop-aws-3.4.2.jar", "/opt/videogen/jars/bundle-2.29.52.jar")
S3A_CREDENTIALS_PROVIDER = "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"

DEFAULT_NAMESPACE = "videogen"
# Fixed driver ports, so that executors can reach the driver pod (its IP, these ports).
DRIVER_PORT = "7078"
BLOCK_MANAGER_PORT = "7079"


class SparkConfigError(ValueError):
    """The cluster Spark settings are incomplete."""


def _required(settings: Settings, name: str, why: str) -> str:
    value = getattr(settings, name) if settings.is_set(name) else None
    if not value:
        raise SparkConfigError(f"{env_var(name)} is not set: {why}")
    return value


def _s3a_conf(settings: Settings, *, on_kubernetes: bool) -> dict[str, str]:
    """S3A settings for ``s3a://`` paths (MinIO/Ceph/AWS); empty without an endpoint."""
    endpoint = settings.s3a_endpoint or settings.s3_endpoint_url
    if not endpoint:
        return {}
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
        # MinIO and Ceph serve buckets under the path, not as virtual hosts.
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "true" if urlsplit(endpoint).scheme == "https" else "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3A_CREDENTIALS_PROVIDER,
    }
    if on_kubernetes:
        # Executor pods read the same keys from the Secret (a reference: name and key, no value).
        secret = settings.s3_credentials_secret
        conf["spark.kubernetes.executor.secretKeyRef.AWS_ACCESS_KEY_ID"] = f"{secret}:AWS_ACCESS_KEY_ID"
        conf["spark.kubernetes.executor.secretKeyRef.AWS_SECRET_ACCESS_KEY"] = f"{secret}:AWS_SECRET_ACCESS_KEY"
    return conf


def _local_conf(settings: Settings) -> dict[str, str]:
    conf = {
        "spark.master": settings.spark_master,
        "spark.jars": ",".join([settings.jdbc_jar, *settings.spark_jars]),
        "spark.sql.session.timeZone": "UTC",
    }
    if settings.s3a_endpoint:  # local S3A only when asked for explicitly
        conf.update(_s3a_conf(settings, on_kubernetes=False))
    return conf


def _cluster_conf(settings: Settings) -> dict[str, str]:
    master = _required(settings, "spark_master",
                       "the production profile runs the KPI assets on a cluster, e.g. k8s://https://kubernetes.default.svc:443")
    if master.startswith("local"):
        raise SparkConfigError(f"{env_var('spark_master')}={master!r} is local mode; "
                               "the production profile needs a cluster master")
    extra_jars = settings.spark_jars or IMAGE_S3A_JARS
    conf = {
        "spark.master": master,
        "spark.submit.deployMode": "client",  # the driver is the Dagster run pod
        "spark.app.name": settings.spark_app_name,
        "spark.sql.session.timeZone": "UTC",
        # The JDBC driver and the S3A jars exist at these paths in the image; the driver serves them
        # to the executors, which load them from their working directory.
        "spark.jars": ",".join([settings.jdbc_jar, *extra_jars]),
        "spark.executor.instances": str(settings.spark_executor_instances),
        "spark.executor.memory": settings.spark_executor_memory,
        "spark.executor.cores": str(settings.spark_executor_cores),
        "spark.driver.port": DRIVER_PORT,
        "spark.blockManager.port": BLOCK_MANAGER_PORT,
        "spark.driver.bindAddress": "0.0.0.0",
    }
    if master.startswith("k8s://"):
        service_account = settings.spark_service_account
        conf.update({
            "spark.kubernetes.container.image": _required(
                settings, "spark_image", "Spark on Kubernetes needs the executor image (the Dockerfile's cpu target)"),
            "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
            "spark.kubernetes.namespace": settings.spark_namespace or settings.k8s_namespace or DEFAULT_NAMESPACE,
            "spark.kubernetes.authenticate.driver.serviceAccountName": service_account,
            "spark.kubernetes.authenticate.executor.serviceAccountName": service_account,
            "spark.kubernetes.executor.podNamePrefix": "videogen-kpi",
            "spark.kubernetes.executor.deleteOnTermination": "true",
            "spark.driver.host": _required(
                settings, "spark_driver_host",
                "executors reach the driver at the run pod's IP (set from status.podIP by spark_driver_k8s_config)"),
        })
        if settings.spark_driver_pod_name:
            # Executors are owned by the driver pod: deleting the run pod deletes them too.
            conf["spark.kubernetes.driver.pod.name"] = settings.spark_driver_pod_name
    conf.update(_s3a_conf(settings, on_kubernetes=master.startswith("k8s://")))
    return conf


def spark_conf_for_profile(env: Mapping[str, str]) -> dict[str, str]:
    """Spark settings for the profile ``VIDEOGEN_PROFILE`` selects (all values are strings).

    ``local``: Spark in local mode with the Debian JDBC jar. ``production``: Spark on the cluster
    named by ``SPARK_MASTER`` (client mode on Kubernetes), with the JDBC jar, S3A and executor
    sizing; raises :class:`SparkConfigError` naming the missing variable.
    """
    settings = load_settings(env)
    if profile_name(env) == LOCAL:
        return _local_conf(settings)
    return _cluster_conf(settings)


def spark_driver_k8s_config(env: Mapping[str, str]) -> dict[str, Any]:
    """``dagster-k8s/config`` for the pod of a KPI run (the Spark driver), as a dict.

    Put it on the KPI job as the tag ``{"dagster-k8s/config": json.dumps(...)}``: the pod runs as
    the ``spark`` service account (allowed to create executor pods) and learns its own IP and name
    from the downward API.
    """
    service_account = load_settings(env).spark_service_account
    return {
        "container_config": {
            "env": [
                {"name": "VIDEOGEN_SPARK_DRIVER_HOST", "value_from": {"field_ref": {"field_path": "status.podIP"}}},
                {"name": "VIDEOGEN_SPARK_DRIVER_POD_NAME", "value_from": {"field_ref": {"field_path": "metadata.name"}}},
            ],
            "ports": [
                {"name": "spark-driver", "container_port": int(DRIVER_PORT)},
                {"name": "spark-blockmgr", "container_port": int(BLOCK_MANAGER_PORT)},
            ],
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "2", "memory": "4Gi"},
            },
        },
        "pod_spec_config": {"service_account_name": service_account},
    }
