"""k8s/ray/rayservice.yaml is a valid KubeRay RayService that runs the code's Serve app, offline.

How it is checked (no cluster, no operator, no network):

1. The RayService validates (``jsonschema``) against the openAPIV3Schema of the RayService CRD of
   KubeRay v1.7.0, vendored in ``tests/deploy/schemas/kuberay/`` (provenance in its header).
2. A walk over every key rejects any the CRD schema does not name where it lists properties: the CRD
   does not set ``additionalProperties: false``, so jsonschema alone accepts a misspelt field (which
   the API server would then drop silently).
3. The head and worker pod templates validate against the strict Kubernetes 1.31 (and newest) Pod
   template schemas of ``kubernetes-validate``.
4. ``serveConfigV2`` validates against Ray Serve's own config schema (``ServeDeploySchema`` of the
   pinned ray) plus a key walk over its models' fields, and names what ``serving/app.py`` defines
   (read with ``ast``: the test does not import the app, ray or torch).
5. Sizing and wiring agree across files: the Dagster pool limit and the Serve capacity, the GPU
   worker group and every registered model, the serve Service and ``VIDEOGEN_SERVE_URL``, the images,
   the Ray version, the ConfigMaps and volumes.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import math
import re
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy import chart
from tests.deploy.kube import K8S_DIR, KUBERNETES_VERSION, REPO_ROOT, load_documents, newest_schema_version, validate_k8s

# ray 2.60's own config models use a pydantic feature pydantic 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`:DeprecationWarning")

RAYSERVICE_PATH = K8S_DIR / "ray" / "rayservice.yaml"
CRD_SCHEMA_PATH = Path(__file__).parent / "schemas" / "kuberay" / "ray.io_rayservices.v1.yaml"
# sha256 of json.dumps(schema, sort_keys=True, separators=(",", ":")), as in the vendored file's header.
CRD_SCHEMA_SHA256 = "9b16fafa752351c31f2fa1878e3f0919ba3536b2857648dc21858c6f0f7215d2"
SERVING_APP = REPO_ROOT / "serving" / "app.py"
# RayServiceUpgradeType of KubeRay v1.7.0 (ray-operator/apis/ray/v1/rayservice_types.go); the CRD
# leaves it a free string.
UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
# serveConfigV2 args that build_app does not read on purpose: a change marker that makes Serve rebuild
# the application (and so re-read the model registry) when the registry ConfigMap changed.
MARKER_ARGS = {"registry_revision"}
# NVIDIA GPU Operator conventions (GPU Feature Discovery labels, the GPU taint).
GPU_RESOURCE = "nvidia.com/gpu"
GFD_GPU_PRESENT = "nvidia.com/gpu.present"
GFD_GPU_MEMORY_MIB = "nvidia.com/gpu.memory"


# --- loading ---------------------------------------------------------------------------------


@cache
def crd_schema() -> dict[str, Any]:
    return yaml.safe_load(CRD_SCHEMA_PATH.read_text())


def rayservice() -> dict[str, Any]:
    (doc,) = load_documents(RAYSERVICE_PATH)
    return doc


def serve_config(service: dict[str, Any] | None = None) -> dict[str, Any]:
    return yaml.safe_load((service or rayservice())["spec"]["serveConfigV2"])


def application(config: dict[str, Any] | None = None) -> dict[str, Any]:
    (app,) = (config or serve_config())["applications"]
    return app


def text_to_video(config: dict[str, Any] | None = None) -> dict[str, Any]:
    (deployment,) = application(config)["deployments"]
    return deployment


def cluster() -> dict[str, Any]:
    return rayservice()["spec"]["rayClusterConfig"]


def head_template() -> dict[str, Any]:
    return cluster()["headGroupSpec"]["template"]


def gpu_group() -> dict[str, Any]:
    (group,) = cluster()["workerGroupSpecs"]
    return group


def ray_container(template: dict[str, Any]) -> dict[str, Any]:
    # KubeRay treats the first container as the Ray container.
    return template["spec"]["containers"][0]


def _config_map(name: str) -> dict[str, str]:
    (doc,) = [d for p in (K8S_DIR / "manifests").glob("*.yaml") for d in load_documents(p)
              if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    return doc["data"]


# --- 1 and 2: the CRD schema -----------------------------------------------------------------


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def unknown_keys(doc: dict[str, Any]) -> list[str]:
    """Keys the CRD schema does not define, wherever it lists the properties of an object."""
    problems: list[str] = []

    def walk(instance: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(instance, dict):
            properties = node.get("properties")
            if properties:
                for key, value in instance.items():
                    if key not in properties:
                        problems.append(f"{path}.{key}: not defined by the RayService CRD")
                    else:
                        walk(value, properties[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                for key, value in instance.items():
                    walk(value, node["additionalProperties"], f"{path}.{key}")
        elif isinstance(instance, list) and isinstance(node.get("items"), dict):
            for index, item in enumerate(instance):
                walk(item, node["items"], f"{path}[{index}]")

    walk(doc, crd_schema(), "RayService")
    return problems


def test_vendored_crd_schema_is_the_unmodified_kuberay_schema():
    header = CRD_SCHEMA_PATH.read_text().split("\n", 12)[:12]
    assert any("v1.7.0" in line and "59d663aeec13760646da3db9c1cf8cfe883e30b7" in line for line in header)
    canonical = json.dumps(crd_schema(), sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == CRD_SCHEMA_SHA256
    spec = crd_schema()["properties"]["spec"]
    assert {"serveConfigV2", "rayClusterConfig", "upgradeStrategy"} <= set(spec["properties"])


def test_rayservice_validates_against_the_crd_schema():
    assert crd_errors(rayservice()) == []


def test_rayservice_uses_only_fields_the_crd_defines():
    assert unknown_keys(rayservice()) == []


def _worker(doc: dict) -> dict:
    return doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: _worker(d).update(maxReplica=5), "workerGroupSpecs[0].maxReplica"),
        (lambda d: d["spec"].update(serveConfigv2=""), "RayService.spec.serveConfigv2"),
        (lambda d: d["spec"]["upgradeStrategy"].update(typ="NewCluster"), "upgradeStrategy.typ"),
        (lambda d: d["spec"]["rayClusterConfig"].update(enableInTreeAutoscalling=True), "enableInTreeAutoscalling"),
        (lambda d: _worker(d)["template"]["spec"]["containers"][0].update(resource={}), "containers[0].resource"),
        (lambda d: _worker(d)["template"]["spec"].update(nodeSelectors={}), "spec.nodeSelectors"),
    ],
)
def test_a_misspelt_field_fails_the_key_walk_even_where_jsonschema_accepts_it(mutate, expected):
    doc = copy.deepcopy(rayservice())
    mutate(doc)
    assert crd_errors(doc) == []  # the CRD schema leaves objects open: jsonschema alone misses it
    assert any(expected in problem for problem in unknown_keys(doc)), unknown_keys(doc)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: _worker(d).pop("groupName"), "'groupName' is a required property"),
        (lambda d: _worker(d).update(maxReplicas="5"), "'5' is not of type 'integer'"),
        (lambda d: _worker(d)["rayStartParams"].update({"num-cpus": 4}), "4 is not of type 'string'"),
        (lambda d: d["spec"]["rayClusterConfig"]["autoscalerOptions"].update(upscalingMode="Fast"), "'Fast' is not one of"),
    ],
)
def test_the_crd_schema_rejects_invalid_values(mutate, expected):
    doc = copy.deepcopy(rayservice())
    mutate(doc)
    assert any(expected in problem for problem in crd_errors(doc)), crd_errors(doc)


# --- 3: pod templates ------------------------------------------------------------------------


def _as_pod_template(template: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate",
            "metadata": {"name": name, "namespace": "videogen"}, "template": template}


@pytest.mark.parametrize("group", ["head", "gpu"])
def test_pod_templates_validate_against_the_kubernetes_schemas(group):
    template = head_template() if group == "head" else gpu_group()["template"]
    pod_template = _as_pod_template(template, f"videogen-{group}")
    validate_k8s(pod_template, KUBERNETES_VERSION)
    validate_k8s(pod_template, newest_schema_version())


def test_a_misspelt_pod_field_fails_the_kubernetes_schema():
    import kubernetes_validate

    template = copy.deepcopy(gpu_group()["template"])
    template["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(_as_pod_template(template, "videogen-gpu"))


# --- 4: serveConfigV2 and serving/app.py -----------------------------------------------------


def serve_schema_problems(config: dict[str, Any]) -> list[str]:
    """Ray Serve's own schema, plus the fields of each of its models (it ignores unknown keys)."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    try:
        ServeDeploySchema.model_validate(config)
    except Exception as error:  # noqa: BLE001 - pydantic's ValidationError, reported as text
        return [str(error)]
    problems = []

    def check(instance: dict[str, Any], model: Any, path: str) -> None:
        problems.extend(f"{path}.{key}: not a field of {model.__name__}" for key in instance if key not in model.model_fields)

    check(config, ServeDeploySchema, "serveConfigV2")
    check(config.get("http_options", {}), HTTPOptionsSchema, "serveConfigV2.http_options")
    for i, app in enumerate(config.get("applications", [])):
        check(app, ServeApplicationSchema, f"applications[{i}]")
        for j, deployment in enumerate(app.get("deployments", [])):
            path = f"applications[{i}].deployments[{j}]"
            check(deployment, DeploymentSchema, path)
            check(deployment.get("ray_actor_options", {}), RayActorOptionsSchema, f"{path}.ray_actor_options")
            check(deployment.get("autoscaling_config", {}), AutoscalingConfig, f"{path}.autoscaling_config")
    return problems


def test_serve_config_validates_against_ray_serve_schema():
    assert serve_schema_problems(serve_config()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: text_to_video(c).update(max_ongoing_request=1), "max_ongoing_request: not a field"),
        (lambda c: text_to_video(c)["autoscaling_config"].update(max_replica=4), "max_replica: not a field"),
        (lambda c: text_to_video(c)["ray_actor_options"].update(num_gpu=1), "num_gpu: not a field"),
        (lambda c: text_to_video(c).update(num_replicas=2), "num_replicas is not allowed when autoscaling_config"),
    ],
)
def test_the_serve_checks_reject_misspelt_and_conflicting_options(mutate, expected):
    config = serve_config()
    mutate(config)
    assert any(expected in problem for problem in serve_schema_problems(config)), serve_schema_problems(config)


@cache
def serving_app_facts() -> dict[str, Any]:
    """What serving/app.py defines, read with ast: module-level string constants, the deployment
    classes with their Serve names, the args build_app reads."""
    tree = ast.parse(SERVING_APP.read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    deployments = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            func = call.func if call else decorator
            if isinstance(func, ast.Attribute) and func.attr == "deployment" or isinstance(func, ast.Name) and func.id == "deployment":
                name = node.name
                for keyword in call.keywords if call else []:
                    if keyword.arg == "name":
                        value = keyword.value
                        name = value.value if isinstance(value, ast.Constant) else constants[value.id]
                deployments[name] = node.name
    builders = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    read_args = set()
    if "build_app" in builders:
        for node in ast.walk(builders["build_app"]):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "args"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                read_args.add(node.args[0].value)
    return {"constants": constants, "deployments": deployments, "builders": builders, "read_args": read_args}


def test_import_path_names_the_application_builder_of_serving_app():
    app = application()
    module, _, attribute = app["import_path"].partition(":")
    assert (module, attribute) == ("serving.app", "build_app")
    assert SERVING_APP == REPO_ROOT / Path(*module.split(".")).with_suffix(".py")
    builder = serving_app_facts()["builders"].get(attribute)
    assert builder is not None, f"{SERVING_APP.relative_to(REPO_ROOT)} defines no function {attribute}"
    assert len(builder.args.args) == 1, "Serve calls an application builder with one argument: the args dict"


def test_application_and_deployment_names_match_the_code():
    facts = serving_app_facts()
    app = application()
    assert app["name"] == facts["constants"].get("APP_NAME") == "videogen"
    assert app["route_prefix"] == "/"
    assert [d["name"] for d in app["deployments"]] == ["TextToVideo"]
    assert "TextToVideo" in facts["deployments"], f"serving/app.py defines the deployments {facts['deployments']}"


def test_every_arg_is_one_build_app_reads():
    args = set(application()["args"])
    unread = args - serving_app_facts()["read_args"] - MARKER_ARGS
    assert not unread, f"build_app ignores {sorted(unread)}: misspelt?"
    assert MARKER_ARGS <= args


def serving_limits_problems(deployment: dict) -> list[str]:
    """What is wrong with a deployment's per-GPU limit and its Serve autoscaling (empty: nothing)."""
    problems = []
    # The replica runs one generation at a time itself (serving/app.py); a second request slot is the
    # request that waits inside the replica, so that the GPU does not idle between two.
    if deployment.get("max_ongoing_requests", 0) < 2:
        problems.append("max_ongoing_requests must be at least 2 (one generating, one waiting in the replica)")
    if deployment.get("ray_actor_options", {}).get("num_gpus") != 1:
        problems.append("each replica must hold one GPU")
    if "num_replicas" in deployment:
        problems.append("num_replicas fixes the count; autoscaling_config must decide it")
    scaling = deployment.get("autoscaling_config", {})
    low, high = scaling.get("min_replicas", 0), scaling.get("max_replicas", 0)
    if not 1 <= low <= high:
        problems.append(f"replicas must satisfy 1 <= min ({low}) <= max ({high})")
    if "initial_replicas" in scaling and not low <= scaling["initial_replicas"] <= high:
        problems.append(f"initial_replicas {scaling['initial_replicas']} is outside [{low}, {high}]")
    # Ray warns that autoscaling never happens when the target exceeds max_ongoing_requests.
    if not 0 < scaling.get("target_ongoing_requests", 0) <= deployment.get("max_ongoing_requests", 0):
        problems.append("target_ongoing_requests must be in (0, max_ongoing_requests]")
    return problems


def test_one_generation_per_gpu_and_replicas_that_follow_the_queue():
    assert serving_limits_problems(text_to_video()) == []


@pytest.mark.parametrize("change, problem", [
    ({"autoscaling_config": {"min_replicas": 0}}, "replicas must satisfy"),
    ({"autoscaling_config": {"min_replicas": 5, "max_replicas": 2}}, "replicas must satisfy"),
    ({"autoscaling_config": {"initial_replicas": 99}}, "initial_replicas 99"),
    ({"autoscaling_config": {"target_ongoing_requests": 3}}, "target_ongoing_requests"),
    ({"max_ongoing_requests": 1}, "max_ongoing_requests must be at least 2"),
    ({"num_replicas": 2}, "num_replicas fixes the count"),
])
def test_the_serving_limits_check_catches_a_broken_copy(change, problem):
    broken = copy.deepcopy(text_to_video())
    for key, value in change.items():
        if isinstance(value, dict):
            broken.setdefault(key, {}).update(value)
        else:
            broken[key] = value
    assert any(problem in p for p in serving_limits_problems(broken)), serving_limits_problems(broken)


# --- 5: sizing and wiring --------------------------------------------------------------------


def _quantity(value: str) -> float:
    """A Kubernetes quantity in base units (cores, bytes)."""
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    number, suffix = match.groups()
    return float(number) * suffixes.get(suffix, 1) if suffix else float(number)


def _surge_replicas(deployment: dict[str, Any]) -> int:
    scaling = deployment["autoscaling_config"]
    return math.ceil(scaling["max_replicas"] * deployment.get("max_surge_percent", 0) / 100)


def test_dagster_pool_limit_is_the_requests_the_serve_app_holds():
    deployment = text_to_video()
    replicas = deployment["autoscaling_config"]["max_replicas"]
    assert chart.values()["concurrency"]["pools"]["defaultLimit"] == replicas * deployment["max_ongoing_requests"]


def test_generate_frames_is_the_only_op_in_a_pool():
    """The Helm values size the pool through `defaultLimit`: right only while it is the one pool."""
    from pipelines.generate_video import generate_video

    pools = {node.name: node.definition.pool for node in generate_video.graph.nodes if node.definition.pool}
    assert pools == {"generate_frames": "videogen_generation"}


def test_gpu_worker_group_covers_the_replicas_and_the_rollout_surge():
    deployment, group = text_to_video(), gpu_group()
    resources = ray_container(group["template"])["resources"]
    gpus_per_pod = int(resources["limits"][GPU_RESOURCE])
    assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE]
    replicas_per_pod = gpus_per_pod // deployment["ray_actor_options"]["num_gpus"]
    assert replicas_per_pod >= 1
    scaling = deployment["autoscaling_config"]
    assert group["maxReplicas"] * replicas_per_pod >= scaling["max_replicas"] + _surge_replicas(deployment)
    assert group["minReplicas"] * replicas_per_pod <= max(scaling["min_replicas"], 1)  # no GPU idles on purpose
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert deployment["ray_actor_options"]["num_cpus"] <= _quantity(resources["limits"]["cpu"])


def test_gpu_workers_land_on_gpu_nodes_and_the_head_holds_no_gpu():
    spec = gpu_group()["template"]["spec"]
    assert spec["nodeSelector"] == {GFD_GPU_PRESENT: "true"}
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    head = head_template()["spec"]
    assert GPU_RESOURCE not in json.dumps(head)
    assert "nodeSelector" not in head and "tolerations" not in head
    assert cluster()["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replica on the head
    assert rayservice()["spec"]["excludeHeadPodFromServeSvc"] is True


def _gpu_memory_floor_mib() -> int:
    (term,) = gpu_group()["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expression,) = [e for e in term["matchExpressions"] if e["key"] == GFD_GPU_MEMORY_MIB]
    assert expression["operator"] == "Gt"
    return int(expression["values"][0]) + 1


def test_every_registered_model_fits_a_gpu_worker():
    from videogen.generation.registry import _spec_from_dict

    entries = json.loads(_config_map("videogen-model-registry")["models.json"])
    assert entries, "the registry ConfigMap lists at least one production model"
    deployment = text_to_video()
    limits = ray_container(gpu_group()["template"])["resources"]["limits"]
    for entry in entries:
        model = _spec_from_dict(entry)
        needs = model.resources
        assert needs.gpu_count <= deployment["ray_actor_options"]["num_gpus"], model.name
        assert needs.gpu_memory_gib * 1024 <= _gpu_memory_floor_mib(), model.name
        assert _quantity(needs.cpu) <= _quantity(limits["cpu"]), model.name
        assert _quantity(needs.memory) <= _quantity(limits["memory"]), model.name
    # The floor is the largest need (not more: a larger floor leaves smaller cards unused).
    assert _gpu_memory_floor_mib() == max(_spec_from_dict(e).resources.gpu_memory_gib for e in entries) * 1024


def test_serve_url_is_the_serve_service_of_this_rayservice():
    service, config = rayservice(), serve_config()
    port = config["http_options"]["port"]
    namespace = service["metadata"]["namespace"]
    assert _config_map("videogen-config")["VIDEOGEN_SERVE_URL"] == \
        f"http://{service['metadata']['name']}-serve-svc.{namespace}.svc:{port}"
    for template in (head_template(), gpu_group()["template"]):
        ports = {p["name"]: p["containerPort"] for p in ray_container(template)["ports"]}
        assert ports["serve"] == port
    probe = ray_container(gpu_group()["template"])["readinessProbe"]["httpGet"]
    assert probe == {"path": "/-/healthz", "port": port}
    assert config["proxy_location"] == "EveryNode"


def test_images_are_the_gpu_target_and_ray_matches_the_pinned_ray():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    repository = chart.user_deployment()["image"]["repository"]
    expected = f"{repository}:{project['version']}-gpu"
    for template in (head_template(), gpu_group()["template"]):
        assert ray_container(template)["image"] == expected
    (ray_pin,) = [d for d in project["dependencies"] if re.match(r"ray(\[.*\])?==", d)]
    assert cluster()["rayVersion"] == ray_pin.split("==")[1]


def test_ray_pods_read_the_dagster_configmap_and_mount_registry_and_cache():
    from videogen.config import load_settings

    config_map = _config_map("videogen-config")
    dagster_config_maps = {ref["name"] for ref in chart.user_deployment()["envConfigMaps"]}
    registry_dir = str(PurePosixPath(config_map["VIDEOGEN_MODEL_REGISTRY"]).parent)
    for template in (head_template(), gpu_group()["template"]):
        container = ray_container(template)
        env_from = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
        # The Dagster pods' configuration; no Secret: the Serve app touches neither PostgreSQL nor S3.
        assert env_from == ["videogen-config"] and set(env_from) <= dagster_config_maps
        assert all("secretRef" not in ref for ref in container["envFrom"]) and "env" not in container
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes[mounts[registry_dir]["name"]]["configMap"]["name"] == "videogen-model-registry"
        # build_app (head) and the replicas (workers) load their settings from this environment.
        settings = load_settings(dict(config_map))
        assert str(settings.model_cache) == config_map["VIDEOGEN_MODEL_CACHE"]
    worker = gpu_group()["template"]
    mounts = {m["mountPath"]: m for m in ray_container(worker)["volumeMounts"]}
    cache_mount = mounts[config_map["VIDEOGEN_MODEL_CACHE"]]
    assert cache_mount["readOnly"] is True
    (volume,) = [v for v in worker["spec"]["volumes"] if v["name"] == cache_mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": "videogen-model-cache", "readOnly": True}


def test_pods_run_as_the_image_user_without_privileges():
    for template in (head_template(), gpu_group()["template"]):
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001 and pod["fsGroup"] == 10001
        container = ray_container(template)["securityContext"]
        assert container == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_rollouts_keep_requests_and_the_autoscaler_follows_replicas():
    spec = rayservice()["spec"]
    assert spec["upgradeStrategy"]["type"] in UPGRADE_TYPES
    assert spec["upgradeStrategy"]["type"] == "NewCluster"  # a new RayCluster, traffic switched when ready
    deployment = text_to_video()
    # The old cluster outlives the switch by at least as long as a replica may take to drain.
    assert spec["rayClusterDeletionDelaySeconds"] >= deployment["graceful_shutdown_timeout_s"] >= 600
    assert deployment.get("max_surge_percent", 0) > 0  # in-place updates start a replica before stopping one
    assert spec["rayClusterConfig"]["enableInTreeAutoscaling"] is True
