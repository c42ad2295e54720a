"""Every plain manifest under k8s/ is a valid Kubernetes object (offline, strict schemas).

Custom resources (the KubeRay RayService of k8s/ray/) are not Kubernetes built-ins: they are validated
against their vendored CRD schema by tests/deploy/test_rayservice.py.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.kube import (
    K8S_DIR,
    KUBERNETES_VERSION,
    load_documents,
    manifest_files,
    newest_schema_version,
    validate_k8s,
)

MANIFESTS = manifest_files()
# API groups of custom resources and the test module that validates them against their CRD.
CUSTOM_RESOURCE_GROUPS = {"ray.io": "tests/deploy/test_rayservice.py",
                          "monitoring.coreos.com": "tests/deploy/test_monitoring.py"}


def _is_custom_resource(doc: dict) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS


def _param(path, doc):
    return pytest.param(doc, id=f"{path.relative_to(K8S_DIR)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")


ALL_DOCUMENTS = [_param(path, doc) for path in MANIFESTS for doc in load_documents(path)]
DOCUMENTS = [_param(path, doc) for path in MANIFESTS for doc in load_documents(path) if not _is_custom_resource(doc)]


def _all_objects() -> list[dict]:
    return [doc for path in MANIFESTS for doc in load_documents(path)]


def _object(kind: str, name: str) -> dict:
    matches = [d for d in _all_objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def test_the_expected_manifests_exist():
    names = {str(p.relative_to(K8S_DIR)) for p in MANIFESTS}
    for expected in (
        "manifests/namespace.yaml",
        "manifests/config.yaml",
        "manifests/s3-endpoint.yaml",
        "manifests/model-registry.yaml",
        "manifests/storage.yaml",
        "manifests/spark-rbac.yaml",
        "secrets/secrets.example.yaml",
        "minio/minio.yaml",
        "jobs/add-model.yaml",
        "ray/rayservice.yaml",
        "api/api.yaml",
        "monitoring/grafana-dashboards.yaml",
        "monitoring/prometheusrule.yaml",
        "monitoring/servicemonitor.yaml",
        "monitoring/podmonitor.yaml",
    ):
        assert expected in names


def test_only_known_custom_resources_skip_the_kubernetes_schemas():
    custom = [doc for path in MANIFESTS for doc in load_documents(path) if _is_custom_resource(doc)]
    assert sorted((d["apiVersion"], d["kind"]) for d in custom) == [
        ("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"), ("ray.io/v1", "RayService")]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_manifest_validates_against_kubernetes_schema(document):
    validate_k8s(document, KUBERNETES_VERSION)
    validate_k8s(document, newest_schema_version())


@pytest.mark.parametrize("document", ALL_DOCUMENTS)
def test_namespaced_objects_live_in_the_videogen_namespace(document):
    if document["kind"] == "Namespace":
        assert document["metadata"]["name"] == "videogen"
    else:
        assert document["metadata"].get("namespace") == "videogen"


def test_secret_template_holds_placeholders_only():
    path = K8S_DIR / "secrets" / "secrets.example.yaml"
    secrets = load_documents(path)
    assert {s["metadata"]["name"] for s in secrets} == {"videogen-dagster-postgresql", "videogen-secrets", "videogen-s3", "videogen-api"}
    for secret in secrets:
        assert "data" not in secret, "base64 data hides what is in the template; use stringData placeholders"
        for key, value in secret["stringData"].items():
            assert "CHANGE_ME" in value, f"{secret['metadata']['name']}.{key} must be a placeholder"
    # The chart reads the Dagster storage password from this exact key.
    assert "postgresql-password" in _object("Secret", "videogen-dagster-postgresql")["stringData"]
    # Real secrets are never applied by `kubectl apply -f k8s/manifests/`.
    assert not any(d["kind"] == "Secret" for p in (K8S_DIR / "manifests").glob("*.yaml") for d in load_documents(p))


def test_model_cache_claim_is_read_write_many():
    claim = _object("PersistentVolumeClaim", "videogen-model-cache")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every GPU worker mounts it
    claims = {d["metadata"]["name"] for d in _all_objects() if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {"videogen-model-cache", "minio-data"}  # no step-scratch claim: a run's ops share one pod


def test_spark_role_lets_the_driver_manage_its_executors():
    role = _object("Role", "spark")
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    for resource, verbs in {
        "pods": ("create", "get", "list", "watch", "delete"),
        "services": ("create", "get", "list", "delete"),
        "configmaps": ("create", "get", "list", "delete"),
        "persistentvolumeclaims": ("create", "get", "list", "delete"),
    }.items():
        for verb in verbs:
            assert (resource, verb) in granted, f"spark Role lacks {verb} on {resource}"
    binding = _object("RoleBinding", "spark")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "spark"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "spark", "namespace": "videogen"}]
    _object("ServiceAccount", "spark")


def test_s3_endpoint_config_points_at_s3_storage():
    data = _object("ConfigMap", "videogen-s3-endpoint")["data"]
    assert data["VIDEOGEN_STORAGE_BACKEND"] == "s3"
    assert data["VIDEOGEN_BUCKET"] == "jobs-outputs"
    assert re.match(r"^https?://", data["VIDEOGEN_S3_ENDPOINT_URL"])


def test_configuration_is_a_complete_production_profile():
    """The ConfigMaps plus the (placeholder) Secrets pass the production profile's checks."""
    from videogen.deploy.profile import production_problems

    env = {**_object("ConfigMap", "videogen-config")["data"], **_object("ConfigMap", "videogen-s3-endpoint")["data"]}
    env.update(_object("Secret", "videogen-secrets")["stringData"])
    assert env["VIDEOGEN_PROFILE"] == "production"
    assert production_problems(env) == []
