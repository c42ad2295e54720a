"""k8s/helm/values.yaml uses only keys the Dagster chart defines, with valid values.

How it is checked, offline:

1. ``values.yaml`` loads as YAML.
2. It validates (``jsonschema``, Draft 7 like the chart's schema) against the vendored chart schema
   ``k8s/helm/values.schema.json``, plus the chart's later top-level ``concurrency`` key
   (``k8s/helm/concurrency.schema.json``, provenance in ``k8s/helm/README.md``). The schema's ``$ref``s to Kubernetes objects (volumes,
   resources, ...) resolve to the strict Kubernetes schemas of ``kubernetes-validate``, so those
   objects are checked field by field too. ``required`` is not enforced on the chart's own objects:
   Helm validates our values merged onto the chart's defaults, which supply the keys we leave out.
   Inside list items (which Helm does not merge) ``required`` is enforced by step 3.
3. A walk over every key rejects any the schema does not name, also where the schema leaves
   ``additionalProperties`` open (most chart objects do, so jsonschema alone would accept typos).
4. The free-form parts (``runMonitoring``, ``runRetries``, ``concurrency``, the run launcher's
   ``runK8sConfig``) are rendered to the dagster.yaml the chart produces (tests/deploy/chart.py) and
   validated with dagster's and dagster-k8s's own config schemas, including dagster's check that run
   limits are not set both in the run coordinator and under ``concurrency``.
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema import _keywords
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.deploy import chart
from tests.deploy.kube import K8S_DIR, KUBERNETES_VERSION, load_documents, manifest_files, strict_definitions, validate_k8s
from videogen.deploy.k8s import MODEL_TAG, USER_TAG

K8S_DEFINITIONS_URL = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"
CONCURRENCY_SCHEMA_PATH = chart.SCHEMA_PATH.with_name("concurrency.schema.json")


def _schema() -> dict[str, Any]:
    schema = json.loads(chart.SCHEMA_PATH.read_text())
    assert "concurrency" not in schema["properties"], (
        "the vendored chart schema defines `concurrency` now: drop concurrency.schema.json (k8s/helm/README.md)")
    schema["properties"]["concurrency"] = json.loads(CONCURRENCY_SCHEMA_PATH.read_text())
    return schema


def _nodes(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def schema_errors(values: dict[str, Any]) -> list[str]:
    """jsonschema errors of ``values`` against the chart schema (step 2 of the module docstring)."""
    schema = _schema()
    external = {ref.split("#")[0] for node in _nodes(schema) for ref in [node.get("$ref", "")] if ref.startswith("http")}
    assert external == {K8S_DEFINITIONS_URL}, f"unexpected external schema references: {external}"
    chart_nodes = {id(node) for node in _nodes(schema)}

    def required_except_chart_objects(validator, required, instance, node):
        if id(node) in chart_nodes:
            return
        yield from _keywords.required(validator, required, instance, node)

    validator_class = jsonschema.validators.extend(jsonschema.Draft7Validator, {"required": required_except_chart_objects})
    # kubernetes-validate keeps its definitions under "$defs" (JSON Schema 2020-12) and refers to
    # them as "#/$defs/..."; the chart refers to "#/definitions/...": serve both names.
    k8s_definitions = strict_definitions(KUBERNETES_VERSION)["$defs"]
    registry = Registry().with_resource(
        K8S_DEFINITIONS_URL,
        Resource.from_contents({"definitions": k8s_definitions, "$defs": k8s_definitions}, default_specification=DRAFT7),
    )
    validator = validator_class(schema, registry=registry)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(values)]


def unknown_keys(values: dict[str, Any]) -> list[str]:
    """Keys the chart schema does not define, and missing required keys in list items (step 3)."""
    schema = _schema()
    problems: list[str] = []

    def resolve(node: dict) -> dict | None:
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                return None  # a Kubernetes object: validated strictly by schema_errors
            target: Any = schema
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
        return node

    def matches_type(instance: Any, node: dict) -> bool:
        types = node.get("type")
        if types is None:
            return True
        python = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None), "number": (int, float)}
        return any(isinstance(instance, python[t]) for t in ([types] if isinstance(types, str) else types))

    def walk(instance: Any, node: dict, path: str, in_list_item: bool) -> None:
        resolved = resolve(node)
        if resolved is None:
            return
        if "anyOf" in resolved:
            for branch in resolved["anyOf"]:
                target = resolve(branch)
                if target is None:
                    return  # a Kubernetes object branch: validated strictly by schema_errors
                if matches_type(instance, target):
                    walk(instance, target, path, in_list_item)
                    break
            # "items" of an optional list sits next to its anyOf: keep walking with the rest.
            resolved = {k: v for k, v in resolved.items() if k != "anyOf"}
        if isinstance(instance, dict):
            properties = resolved.get("properties") or {}
            if properties:
                for key, value in instance.items():
                    if key not in properties:
                        problems.append(f"{path}.{key}: not defined by the chart schema")
                    else:
                        walk(value, properties[key], f"{path}.{key}", in_list_item)
            elif isinstance(resolved.get("additionalProperties"), dict):
                for key, value in instance.items():
                    walk(value, resolved["additionalProperties"], f"{path}.{key}", in_list_item)
            if in_list_item:
                for key in resolved.get("required", []):
                    if key not in instance:
                        problems.append(f"{path}: missing required key {key!r} (list items get no chart defaults)")
        elif isinstance(instance, list) and isinstance(resolved.get("items"), dict):
            for index, item in enumerate(instance):
                walk(item, resolved["items"], f"{path}[{index}]", True)

    walk(values, schema, "values", False)
    return problems


def test_values_load_as_yaml():
    values = yaml.safe_load(chart.VALUES_PATH.read_text())
    assert isinstance(values, dict) and values


def test_values_validate_against_the_chart_schema():
    assert schema_errors(chart.values()) == []


def test_values_use_only_keys_the_chart_defines():
    assert unknown_keys(chart.values()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda v: v["dagsterDaemon"].update(runCordinator={}), "dagsterDaemon.runCordinator"),
        (lambda v: v.update(postgres={}), "values.postgres"),
        (lambda v: v["dagster-user-deployments"]["deployments"][0].update(dagsterApiGrpcArg=[]), "dagsterApiGrpcArg"),
        (lambda v: v["dagster-user-deployments"]["deployments"][0].pop("port"), "missing required key 'port'"),
        (lambda v: v["concurrency"]["runs"]["tagConcurrencyLimits"][0].pop("limit"), "missing required key 'limit'"),
        (lambda v: v["concurrency"]["pools"].update(defaultLimt=4), "concurrency.pools.defaultLimt"),
    ],
)
def test_the_key_walk_rejects_typos_and_missing_list_item_keys(mutate, expected):
    values = copy.deepcopy(chart.values())
    mutate(values)
    assert any(expected in problem for problem in unknown_keys(values) + schema_errors(values))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda v: v["runLauncher"].update(type="K8sLauncher"), "runLauncher.type"),
        (lambda v: v["dagster-user-deployments"]["deployments"][0].update(volumes=[{"name": "x", "configMapp": {}}]), "configMapp"),
        (lambda v: v["dagster-user-deployments"]["deployments"][0]["resources"].update(limits="2Gi"), "resources.limits"),
        (lambda v: v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"].update(maxConcurrentRun=3),
         "maxConcurrentRun"),
        (lambda v: v["concurrency"]["pools"].update(defaultLimit="4"), "concurrency.pools.defaultLimit"),
    ],
)
def test_the_schema_check_rejects_invalid_values(mutate, expected):
    values = copy.deepcopy(chart.values())
    mutate(values)
    assert any(expected in problem for problem in schema_errors(values))


def test_postgresql_storage_comes_from_an_existing_secret():
    values = chart.values()
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlHost"]
    secret_name = values["global"]["postgresqlSecretName"]
    (secret,) = [s for s in load_documents(K8S_DIR / "secrets" / "secrets.example.yaml") if s["metadata"]["name"] == secret_name]
    assert "postgresql-password" in secret["stringData"]  # the key the chart reads
    assert "postgresqlPassword" not in values["postgresql"], "no password in the values file"


def test_k8s_run_launcher_and_user_code_deployment():
    values = chart.values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = chart.user_deployment()
    assert deployment["dagsterApiGrpcArgs"][:2] == ["-m", "definitions"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    # The port is the one the image exposes.
    dockerfile = (K8S_DIR.parent / "Dockerfile").read_text()
    assert f"EXPOSE {deployment['port']}" in dockerfile
    # Every ConfigMap and Secret the pods read exists in k8s/.
    objects = {(d["kind"], d["metadata"]["name"]) for p in manifest_files() for d in load_documents(p)}
    for ref in deployment["envConfigMaps"]:
        assert ("ConfigMap", ref["name"]) in objects
    for ref in deployment["envSecrets"]:
        assert ("Secret", ref["name"]) in objects
    for volume in deployment["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in objects


def test_system_images_match_the_pinned_dagster():
    values = chart.values()
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"]["tag"] == version("dagster"), component


def test_run_queue_limits_users_and_backfills_and_no_gpu_tag():
    concurrency = chart.values()["concurrency"]
    assert concurrency["enabled"] is True
    runs = concurrency["runs"]
    by_key = {limit["key"]: limit for limit in runs["tagConcurrencyLimits"]}
    assert set(by_key) == {USER_TAG, "dagster/backfill"}  # GPU capacity is the pool, not a run tag
    assert by_key[USER_TAG]["value"] == {"applyLimitPerUniqueValue": True}
    assert "value" not in by_key["dagster/backfill"]  # all backfill runs together
    assert MODEL_TAG not in by_key
    # Run pods in flight: more than the generation slots, so other requests validate, encode and
    # upload while the slots generate.
    assert runs["maxConcurrentRuns"] > concurrency["pools"]["defaultLimit"] >= 1
    # The chart refuses run limits in both places; Dagster refuses them next to `concurrency`.
    queued = chart.values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits", "blockOpConcurrencyLimitedRuns"} & set(queued)


def test_generation_pool_is_op_granular_and_frees_slots_of_dead_runs():
    values = chart.values()
    pools = values["concurrency"]["pools"]
    assert pools["granularity"] == "op"  # runs start and wait for a slot only around generate_frames
    assert values["dagsterDaemon"]["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0  # 0 disables it
    rendered = chart.instance_config()
    assert rendered["concurrency"]["pools"] == {"default_limit": pools["defaultLimit"], "granularity": "op"}
    assert rendered["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert "max_concurrent_runs" not in rendered["run_coordinator"]["config"]


def test_rendered_instance_config_is_valid_for_dagster():
    from dagster._config import Shape, process_config
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster._core.run_coordinator import QueuedRunCoordinator

    instance = chart.instance_config()
    assert instance["run_monitoring"]["enabled"] is True
    assert instance["run_retries"]["enabled"] is True
    assert instance["sensors"]["use_threads"] is True and instance["sensors"]["num_workers"] >= 2
    result = process_config(Shape(dagster_instance_config_schema()), instance)
    assert result.success, result.errors
    # What DagsterInstance checks at start-up: run limits only under `concurrency` once pools are set.
    from dagster._core.instance.config import validate_concurrency_config

    validate_concurrency_config(instance)
    doubled = copy.deepcopy(instance)
    doubled["run_coordinator"]["config"]["max_concurrent_runs"] = 5
    with pytest.raises(Exception, match="incompatible with the `concurrency > runs` config"):
        validate_concurrency_config(doubled)
    coordinator = process_config(Shape(QueuedRunCoordinator.config_type()), instance["run_coordinator"]["config"])
    assert coordinator.success, coordinator.errors


def test_free_form_monitoring_and_retry_keys_are_ones_the_chart_renders():
    daemon = chart.values()["dagsterDaemon"]
    # configmap-instance.yaml reads exactly these keys; anything else would be silently ignored.
    assert set(daemon["runMonitoring"]) <= {
        "enabled", "startTimeoutSeconds", "cancelTimeoutSeconds", "maxResumeRunAttempts",
        "pollIntervalSeconds", "freeSlotsAfterRunEndSeconds",
    }
    assert set(daemon["runRetries"]) <= {"enabled", "maxRetries"}


def test_rendered_run_launcher_config_is_valid_for_dagster_k8s():
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    result = process_config(K8sRunLauncher.config_type(), chart.run_launcher_config())
    assert result.success, result.errors


def test_rendered_run_pod_is_a_valid_kubernetes_job_without_gpu():
    job = chart.render_run_job()
    validate_k8s(job)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == chart.user_code_image()
    assert "nvidia.com/gpu" not in json.dumps(container.get("resources", {}))
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    env_from = {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]}
    assert {"videogen-config", "videogen-secrets", "videogen-s3", "videogen-s3-endpoint"} <= env_from


def test_run_pod_runs_every_op_with_room_for_frames_and_encoding():
    """generate_video runs all its ops in the run pod (in_process executor): the pod holds the frames
    Serve returns, encodes them, and keeps the outputs passed between ops in a bounded scratch folder."""
    job = chart.render_run_job()
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["run-scratch"] == f"{chart.DAGSTER_HOME}/storage"  # Dagster's fs IO manager base dir
    (scratch,) = [v for v in pod["volumes"] if v["name"] == "run-scratch"]
    assert scratch["emptyDir"]["sizeLimit"]
    # Sized like the old encode_video step pod: ffmpeg plus the frames in memory.
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
