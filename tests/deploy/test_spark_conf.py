"""The Spark settings for the KPI assets on a cluster: JDBC jar, S3A, Kubernetes, no secrets."""

from __future__ import annotations

import json

import pytest

from tests.deploy import chart
from tests.deploy.kube import validate_k8s
from videogen.deploy.spark import SparkConfigError, spark_conf_for_profile, spark_driver_k8s_config

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"
DB_PASSWORD = "db-Pa55word"

CLUSTER_ENV = {
    "VIDEOGEN_PROFILE": "production",
    "SPARK_MASTER": "k8s://https://kubernetes.default.svc:443",
    "VIDEOGEN_SPARK_IMAGE": "registry.example.com/videogen:0.1.0-cpu",
    "VIDEOGEN_SPARK_NAMESPACE": "videogen",
    "VIDEOGEN_SPARK_DRIVER_HOST": "10.42.3.17",
    "VIDEOGEN_SPARK_DRIVER_POD_NAME": "dagster-run-0123",
    "VIDEOGEN_S3_ENDPOINT_URL": "http://minio.videogen.svc.cluster.local:9000",
    "AWS_ACCESS_KEY_ID": "videogen",
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "DATABASE_URL": f"postgresql://videogen:{DB_PASSWORD}@postgresql:5432/videogen",
}


def test_cluster_conf_targets_spark_on_kubernetes_in_client_mode():
    conf = spark_conf_for_profile(CLUSTER_ENV)
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.container.image"] == "registry.example.com/videogen:0.1.0-cpu"
    assert conf["spark.kubernetes.namespace"] == "videogen"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "spark"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "spark"
    assert conf["spark.driver.host"] == "10.42.3.17"
    assert conf["spark.kubernetes.driver.pod.name"] == "dagster-run-0123"
    assert (conf["spark.executor.instances"], conf["spark.executor.memory"], conf["spark.executor.cores"]) == ("2", "2g", "1")
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_cluster_conf_has_the_jdbc_jar_and_the_s3a_jars():
    jars = spark_conf_for_profile(CLUSTER_ENV)["spark.jars"].split(",")
    assert jars[0] == "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java
    assert any("hadoop-aws-3.4.2" in jar for jar in jars)
    assert any("bundle-2.29.52" in jar for jar in jars)


def test_cluster_conf_has_the_s3a_settings():
    conf = spark_conf_for_profile(CLUSTER_ENV)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio.videogen.svc.cluster.local:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("EnvironmentVariableCredentialsProvider")
    assert conf["spark.kubernetes.executor.secretKeyRef.AWS_SECRET_ACCESS_KEY"] == "videogen-s3:AWS_SECRET_ACCESS_KEY"


def test_no_secret_value_reaches_the_conf():
    conf = spark_conf_for_profile(CLUSTER_ENV)
    dumped = json.dumps(conf)
    assert AWS_SECRET not in dumped and DB_PASSWORD not in dumped
    assert all(isinstance(value, str) for value in conf.values())


def test_the_cluster_conf_of_the_shipped_manifests_is_complete():
    from tests.deploy.kube import K8S_DIR, load_documents

    env = {"VIDEOGEN_SPARK_DRIVER_HOST": "10.0.0.1"}
    for name in ("config.yaml", "s3-endpoint.yaml"):
        (config_map,) = load_documents(K8S_DIR / "manifests" / name)
        env.update(config_map["data"])
    conf = spark_conf_for_profile(env)
    assert conf["spark.kubernetes.container.image"].endswith("-cpu")
    assert conf["spark.jars"].startswith("/usr/share/java/postgresql.jar,")


@pytest.mark.parametrize(
    ("missing", "message"),
    [("SPARK_MASTER", "SPARK_MASTER is not set"),
     ("VIDEOGEN_SPARK_IMAGE", "VIDEOGEN_SPARK_IMAGE is not set"),
     ("VIDEOGEN_SPARK_DRIVER_HOST", "VIDEOGEN_SPARK_DRIVER_HOST is not set")],
)
def test_missing_cluster_settings_are_named(missing, message):
    env = {k: v for k, v in CLUSTER_ENV.items() if k != missing}
    with pytest.raises(SparkConfigError, match=message):
        spark_conf_for_profile(env)


def test_production_refuses_local_mode():
    with pytest.raises(SparkConfigError, match="local mode"):
        spark_conf_for_profile({**CLUSTER_ENV, "SPARK_MASTER": "local[4]"})


def test_local_profile_runs_spark_locally_with_the_debian_jar():
    conf = spark_conf_for_profile({})
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.jars"] == "/usr/share/java/postgresql.jar"
    assert not any(key.startswith("spark.kubernetes.") for key in conf)


def test_kpi_driver_pod_is_valid_and_can_reach_its_executors():
    """A KPI run tagged with spark_driver_k8s_config: valid pod, spark SA, pod IP in the env."""
    tags = {"dagster-k8s/config": json.dumps(spark_driver_k8s_config(CLUSTER_ENV))}
    job = chart.render_run_job(tags)
    validate_k8s(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "spark"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VIDEOGEN_SPARK_DRIVER_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert {p["containerPort"] for p in container["ports"]} == {7078, 7079}


def test_the_kpi_spark_resource_uses_the_cluster_conf_in_production():
    from resources.spark import SparkSessionResource

    resource = SparkSessionResource(master=CLUSTER_ENV["SPARK_MASTER"], spark_conf_json='{"spark.executor.memory": "6g"}')
    conf = resource.spark_config(CLUSTER_ENV).conf
    assert conf["spark.kubernetes.container.image"] == spark_conf_for_profile(CLUSTER_ENV)["spark.kubernetes.container.image"]
    assert "postgresql" in conf["spark.jars"] and conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.executor.memory"] == "6g"  # VIDEOGEN_SPARK_CONF overrides the profile
    local = resource.spark_config({}).conf
    assert "spark.kubernetes.container.image" not in local
