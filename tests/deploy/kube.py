"""Offline Kubernetes schema validation for the deploy tests.

Objects are validated with ``kubernetes-validate`` (the package ships the OpenAPI-derived JSON
schemas of every Kubernetes minor version from 1.25 on) in *strict* mode, which also rejects
fields that Kubernetes does not define (a misspelt key would otherwise be silently dropped by the
API server).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

# The Kubernetes version the manifests and rendered pods target (a currently supported release on
# the managed clouds); every object is also checked against the newest schema the package ships.
KUBERNETES_VERSION = "1.31"
REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"


def newest_schema_version() -> str:
    return kubernetes_validate.utils.latest_version()


def validate_k8s(obj: dict[str, Any], version: str = KUBERNETES_VERSION) -> None:
    """Raise ``kubernetes_validate.ValidationError`` if ``obj`` is not a valid object of ``version``."""
    kubernetes_validate.validate(obj, version, strict=True)


@cache
def strict_definitions(version: str = KUBERNETES_VERSION) -> dict[str, Any]:
    """The ``_definitions.json`` of the strict schemas for ``version`` (for $ref resolution)."""
    package_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    candidates = sorted(
        (p for p in package_dir.glob(f"v{version}.*-local-strict")), key=lambda p: p.name
    )
    if not candidates:
        raise LookupError(f"kubernetes-validate ships no schema for Kubernetes {version}")
    return json.loads((candidates[-1] / "_definitions.json").read_text())


# YAML files under k8s/ that are not Kubernetes objects: Prometheus's rule file and its unit tests,
# Grafana's provisioning files (tests/deploy/test_monitoring.py checks them with their own tools).
NOT_OBJECTS = {"monitoring/rules.yaml", "monitoring/rules_test.yaml"}
NOT_OBJECT_DIRS = {"helm", "grafana-provisioning"}


def manifest_files() -> list[Path]:
    """Every YAML file under k8s/ that holds Kubernetes objects (the Helm values are not objects)."""
    return sorted(p for p in K8S_DIR.rglob("*.yaml")
                  if not NOT_OBJECT_DIRS & set(p.relative_to(K8S_DIR).parts)
                  and p.relative_to(K8S_DIR).as_posix() not in NOT_OBJECTS)


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def to_api_dict(model: Any) -> dict[str, Any]:
    """A kubernetes-client model (e.g. the V1Job dagster-k8s builds) as the API would receive it."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(model)
