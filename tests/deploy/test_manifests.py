"""Every plain manifest under k8s/ is a valid Kubernetes object (offline, strict schemas)."""

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
DOCUMENTS = [
    pytest.param(doc, id=f"{path.relative_to(K8S_DIR)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    for path in MANIFESTS
    for doc in load_documents(path)
]


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
    ):
        assert expected in names


@pytest.mark.parametrize("document", DOCUMENTS)
def test_manifest_validates_against_kubernetes_schema(document):
    validate_k8s(document, KUBERNETES_VERSION)
    validate_k8s(document, newest_schema_version())


@pytest.mark.parametrize("document", DOCUMENTS)
def test_namespaced_objects_live_in_the_videogen_namespace(document):
    if document["kind"] == "Namespace":
        assert document["metadata"]["name"] == "videogen"
    else:
        assert document["metadata"].get("namespace") == "videogen"


def test_secret_template_holds_placeholders_only():
    path = K8S_DIR / "secrets" / "secrets.example.yaml"
    secrets = load_documents(path)
    assert {s["metadata"]["name"] for s in secrets} == {"videogen-dagster-postgresql", "videogen-secrets", "videogen-s3"}
    for secret in secrets:
        assert "data" not in secret, "base64 data hides what is in the template; use stringData placeholders"
        for key, value in secret["stringData"].items():
            assert "CHANGE_ME" in value, f"{secret['metadata']['name']}.{key} must be a placeholder"
    # The chart reads the Dagster storage password from this exact key.
    assert "postgresql-password" in _object("Secret", "videogen-dagster-postgresql")["stringData"]
    # Real secrets are never applied by `kubectl apply -f k8s/manifests/`.
    assert not any(d["kind"] == "Secret" for p in (K8S_DIR / "manifests").glob("*.yaml") for d in load_documents(p))


def test_model_cache_and_scratch_claims_are_read_write_many():
    for name in ("videogen-model-cache", "videogen-scratch"):
        claim = _object("PersistentVolumeClaim", name)
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], name


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


def test_registered_models_fit_gpu_placement():
    import json

    from videogen.deploy.k8s import GpuPlacement, run_config_for_model
    from videogen.generation.registry import _spec_from_dict

    raw = json.loads(_object("ConfigMap", "videogen-model-registry")["data"]["models.json"])
    assert raw, "the registry ConfigMap lists at least one production model"
    for entry in raw:
        spec = _spec_from_dict(entry)
        assert run_config_for_model(spec, GpuPlacement())["execution"]["config"]["per_step_k8s_config"]
