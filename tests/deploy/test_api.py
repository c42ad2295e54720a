"""The HTTP API's manifests (k8s/api/) against the contract of ``videogen serve-api``.

Contract: the cpu image runs ``videogen serve-api --host 0.0.0.0 --port 8800`` (uvicorn), port 8800
named ``http``; ``GET /health`` is liveness, ``GET /ready`` readiness (PostgreSQL reachable, migrations
at head); ``DATABASE_URL`` and ``VIDEOGEN_API_JWT_SECRET`` (and the S3 keys that sign download URLs) come from Secrets, the rest of the
configuration from the ConfigMaps the other videogen pods read. Around it: a ClusterIP Service
(80 → http), an autoscaling/v2 HorizontalPodAutoscaler (2–10 pods, 70 % CPU) and a
PodDisruptionBudget.

The schema validation of these objects (Kubernetes 1.31 and the newest schema, strict) is done with
every other manifest by test_manifests.py; the tests here check what a schema cannot: that the
objects fit each other, the image and the rest of the deployment. The checks are functions returning
the problems they find, so that each test also shows a broken copy being caught.
"""

from __future__ import annotations

import copy
import posixpath
import re
import secrets as secrets_module
from typing import Any

import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity
from kubernetes_validate import ValidationError

from tests.deploy.kube import K8S_DIR, KUBERNETES_VERSION, REPO_ROOT, load_documents, manifest_files, validate_k8s

API_DIR = K8S_DIR / "api"
NAME = "videogen-api"
PORT = 8800
PORT_NAME = "http"
COMMAND = ["videogen", "serve-api", "--host", "0.0.0.0", "--port", str(PORT)]
# Environment variable → (Secret, key) it must be read from.
SECRET_ENV = {
    "DATABASE_URL": ("videogen-secrets", "DATABASE_URL"),
    "VIDEOGEN_API_JWT_SECRET": ("videogen-api", "VIDEOGEN_API_JWT_SECRET"),
    # The API presigns the S3 download URLs of finished videos.
    "AWS_ACCESS_KEY_ID": ("videogen-s3", "AWS_ACCESS_KEY_ID"),
    "AWS_SECRET_ACCESS_KEY": ("videogen-s3", "AWS_SECRET_ACCESS_KEY"),
}
# The ConfigMaps every other videogen pod reads (the Helm values' envConfigMaps).
SHARED_CONFIG_MAPS = ["videogen-config", "videogen-s3-endpoint"]


# --- loading ------------------------------------------------------------------------------------


def api_objects() -> list[dict[str, Any]]:
    """The objects under k8s/api/, freshly parsed (tests may change them)."""
    return [doc for path in sorted(API_DIR.glob("*.yaml")) for doc in load_documents(path)]


def the(objects: list[dict[str, Any]], kind: str, name: str = NAME) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def other_objects() -> list[dict[str, Any]]:
    """Every object under k8s/ outside k8s/api/ (the ConfigMaps, the Secrets template, ...)."""
    return [doc for path in manifest_files() if path.parent != API_DIR for doc in load_documents(path)]


def template_secrets() -> dict[str, dict[str, str]]:
    path = K8S_DIR / "secrets" / "secrets.example.yaml"
    return {s["metadata"]["name"]: s["stringData"] for s in load_documents(path)}


def config_maps() -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o["data"] for o in other_objects() if o["kind"] == "ConfigMap"}


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "helm" / "values.yaml").read_text())


def api_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["api"], "one container, named api"
    return containers[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture
def objects() -> list[dict[str, Any]]:
    return api_objects()


@pytest.fixture
def deployment(objects) -> dict[str, Any]:
    return the(objects, "Deployment")


# --- the checks -----------------------------------------------------------------------------------


def probe_problems(deployment: dict[str, Any]) -> list[str]:
    container = api_container(deployment)
    port_names = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    problems = []
    if port_names.get(PORT_NAME) != PORT:
        problems.append(f"container port {PORT} must be named {PORT_NAME!r}, ports: {container.get('ports')}")
    expected = {"readinessProbe": "/ready", "livenessProbe": "/health"}
    if "startupProbe" in container:
        expected["startupProbe"] = "/health"  # never /ready: a database outage must not keep pods starting
    for probe_name, path in expected.items():
        probe = container.get(probe_name)
        if probe is None:
            problems.append(f"no {probe_name}")
            continue
        get = probe.get("httpGet")
        if get is None:
            problems.append(f"{probe_name} is not an HTTP GET")
            continue
        if get.get("path") != path:
            problems.append(f"{probe_name} asks {get.get('path')!r}, not {path}")
        if get.get("port") != PORT_NAME:
            problems.append(f"{probe_name} uses port {get.get('port')!r}, not the named port {PORT_NAME!r}")
        if get.get("scheme", "HTTP") != "HTTP":
            problems.append(f"{probe_name}: uvicorn serves plain HTTP")
    return problems


def secret_problems(deployment: dict[str, Any], secrets: dict[str, dict[str, str]]) -> list[str]:
    """The secret variables come by reference from the Secrets template's Secrets, never as a value."""
    container = api_container(deployment)
    secret_keys = {key for data in secrets.values() for key in data}
    problems = []
    env = container.get("env", [])
    for var, (secret, key) in SECRET_ENV.items():
        entries = [e for e in env if e["name"] == var]
        if len(entries) != 1:
            problems.append(f"{var} is given {len(entries)} times in env, expected once")
            continue
        ref = entries[0].get("valueFrom", {}).get("secretKeyRef")
        if ref is None or {"name": ref.get("name"), "key": ref.get("key")} != {"name": secret, "key": key}:
            problems.append(f"{var} must come from secretKeyRef {secret}/{key}, got {entries[0]}")
        elif ref.get("optional"):
            problems.append(f"{var} must not be optional: the API cannot run without it")
    for entry in env:
        if (entry["name"] in SECRET_ENV or entry["name"] in secret_keys) and "value" in entry:
            problems.append(f"{entry['name']} has a literal value in the manifest")
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref.get("key") not in secrets.get(ref.get("name"), {}):
            problems.append(f"{entry['name']}: Secret {ref.get('name')} has no key {ref.get('key')} in the template")
    for source in container.get("envFrom", []):
        if "secretRef" in source and source["secretRef"]["name"] not in secrets:
            problems.append(f"envFrom Secret {source['secretRef']['name']} is not in the secrets template")
    return problems


def service_problems(service: dict[str, Any], deployment: dict[str, Any]) -> list[str]:
    problems = []
    spec = service["spec"]
    if spec.get("type", "ClusterIP") != "ClusterIP":
        problems.append(f"type {spec.get('type')}, expected ClusterIP")
    template = deployment["spec"]["template"]
    if not selects(spec.get("selector", {}), template["metadata"]["labels"]):
        problems.append(f"selector {spec.get('selector')} does not select the pod labels {template['metadata']['labels']}")
    port_names = {p.get("name") for p in api_container(deployment).get("ports", [])}
    ports = spec.get("ports", [])
    if [(p.get("name"), p["port"], p.get("targetPort")) for p in ports] != [(PORT_NAME, 80, PORT_NAME)]:
        problems.append(f"ports {ports}, expected one: {PORT_NAME} 80 → targetPort {PORT_NAME}")
    for port in ports:
        if port.get("targetPort") not in port_names:
            problems.append(f"targetPort {port.get('targetPort')!r} is no container port name ({port_names})")
    return problems


def autoscaler_problems(hpa: dict[str, Any], deployment: dict[str, Any]) -> list[str]:
    problems = []
    spec = hpa["spec"]
    target = {"apiVersion": deployment["apiVersion"], "kind": deployment["kind"], "name": deployment["metadata"]["name"]}
    if spec["scaleTargetRef"] != target:
        problems.append(f"scaleTargetRef {spec['scaleTargetRef']}, expected {target}")
    if hpa["metadata"]["namespace"] != deployment["metadata"]["namespace"]:
        problems.append("the HorizontalPodAutoscaler scales Deployments of its own namespace only")
    if (spec.get("minReplicas"), spec["maxReplicas"]) != (2, 10):
        problems.append(f"replicas {spec.get('minReplicas')}..{spec['maxReplicas']}, expected 2..10")
    cpu = [{"name": m["resource"]["name"], **m["resource"]["target"]} for m in spec.get("metrics", []) if m["type"] == "Resource"]
    if cpu != [{"name": "cpu", "type": "Utilization", "averageUtilization": 70}] or len(spec["metrics"]) != 1:
        problems.append(f"metrics {spec.get('metrics')}, expected CPU utilization 70 %")
    # Utilization is measured against the requests: without a CPU request the HPA has no target.
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if "cpu" not in container.get("resources", {}).get("requests", {}):
            problems.append(f"container {container['name']} has no CPU request: CPU utilization is undefined")
    # kubectl apply of a Deployment with `replicas` resets the autoscaler's choice on every deploy.
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas: the HorizontalPodAutoscaler owns the count")
    return problems


def pod_environment(deployment: dict[str, Any], maps: dict[str, dict[str, str]],
                    secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet would build it (envFrom in order, then env)."""
    container = api_container(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]
        if "secretKeyRef" in ref:
            env[entry["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[entry["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
    return env


# --- the objects ----------------------------------------------------------------------------------


def test_the_api_folder_holds_deployment_service_autoscaler_and_disruption_budget(objects):
    kinds = sorted((o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("apps/v1", "Deployment", NAME),
        ("autoscaling/v2", "HorizontalPodAutoscaler", NAME),
        ("policy/v1", "PodDisruptionBudget", NAME),
        ("v1", "Service", NAME),
    ]
    assert all(o["metadata"]["namespace"] == "videogen" for o in objects)
    # No Secret in here: `kubectl apply -f k8s/api/` must never overwrite the real key.
    assert not any(o["kind"] == "Secret" for o in objects)


def test_a_misspelt_probe_field_fails_the_strict_schema(deployment):
    validate_k8s(deployment, KUBERNETES_VERSION)
    broken = copy.deepcopy(deployment)
    probe = api_container(broken)["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(ValidationError):
        validate_k8s(broken, KUBERNETES_VERSION)


def test_deployment_selector_matches_its_pod_labels(deployment):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert labels["app.kubernetes.io/part-of"] == "videogen"
    for constraint in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert selects(constraint["labelSelector"]["matchLabels"], labels)


# --- the container: image, command, probes ------------------------------------------------------------


def test_container_runs_serve_api_through_the_image_entrypoint(deployment):
    container = api_container(deployment)
    # `command` would replace the image's ENTRYPOINT (tini, which forwards SIGTERM to uvicorn).
    assert "command" not in container
    assert container["args"] == COMMAND


def test_serve_api_command_is_one_the_cli_accepts(deployment):
    from videogen.cli import build_parser

    args = build_parser().parse_args(api_container(deployment)["args"][1:])
    assert args.command == "serve-api"
    assert args.host == "0.0.0.0"
    assert int(args.port) == PORT


def test_image_is_the_cpu_image_of_the_other_videogen_pods(deployment):
    image = api_container(deployment)["image"]
    user_code = helm_values()["dagster-user-deployments"]["deployments"][0]["image"]
    assert image == f"{user_code['repository']}:{user_code['tag']}"
    assert image == config_maps()["videogen-config"]["VIDEOGEN_SPARK_IMAGE"]
    assert re.fullmatch(r"[^:@]+/videogen:\d+\.\d+\.\d+-cpu", image), "the Dockerfile's cpu target, a pinned version"
    # The version of the tag is the project's.
    import tomllib

    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image.endswith(f":{version}-cpu")


def test_probes_ask_ready_and_health_on_the_named_port(deployment):
    assert probe_problems(deployment) == []
    container = api_container(deployment)
    # Liveness never depends on the database: a PostgreSQL outage must not restart every API pod.
    assert container["livenessProbe"]["httpGet"]["path"] != container["readinessProbe"]["httpGet"]["path"]


@pytest.mark.parametrize(
    ("probe", "field", "value"),
    [("readinessProbe", "path", "/health"), ("livenessProbe", "path", "/ready"),
     ("readinessProbe", "port", PORT), ("startupProbe", "path", "/ready")],
)
def test_probe_check_catches_a_wrong_probe(deployment, probe, field, value):
    api_container(deployment)[probe]["httpGet"][field] = value
    assert probe_problems(deployment)


def test_rolling_update_waits_for_readiness(deployment):
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    # An old pod goes only when a new one is ready (readinessProbe: /ready).
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1
    assert "readinessProbe" in api_container(deployment)


def test_resources_are_sized_for_a_light_python_web_process(deployment):
    resources = api_container(deployment)["resources"]
    for name in ("cpu", "memory"):
        request, limit = parse_quantity(resources["requests"][name]), parse_quantity(resources["limits"][name])
        assert 0 < request <= limit, name
    assert parse_quantity(resources["requests"]["cpu"]) <= parse_quantity("500m")
    # The API process is ~100 MiB after its imports; it never holds frames or models.
    assert parse_quantity("256Mi") <= parse_quantity(resources["limits"]["memory"]) <= parse_quantity("1Gi")


# --- configuration and secrets ---------------------------------------------------------------------


def test_secrets_come_by_reference_only(deployment):
    assert secret_problems(deployment, template_secrets()) == []
    # Nowhere in the API's manifests is a secret value, not even the template's placeholder.
    assert "CHANGE_ME" not in "".join(p.read_text() for p in API_DIR.glob("*.yaml"))


@pytest.mark.parametrize("variable", sorted(SECRET_ENV))
def test_secret_check_catches_a_literal_value(deployment, variable):
    for entry in api_container(deployment)["env"]:
        if entry["name"] == variable:
            entry.pop("valueFrom")
            entry["value"] = "postgresql://videogen:hunter2@db/videogen" if variable == "DATABASE_URL" else "x" * 64
    assert secret_problems(deployment, template_secrets())


def test_secret_check_catches_a_missing_key_or_the_wrong_secret(deployment):
    env = api_container(deployment)["env"]
    jwt = next(e for e in env if e["name"] == "VIDEOGEN_API_JWT_SECRET")
    jwt["valueFrom"]["secretKeyRef"]["name"] = "videogen-secrets"  # no such key there
    assert secret_problems(deployment, template_secrets())
    env.remove(jwt)
    assert secret_problems(deployment, template_secrets())


def test_the_jwt_key_has_a_secret_of_its_own_the_run_pods_do_not_receive():
    secrets = template_secrets()
    assert set(secrets["videogen-api"]) == {"VIDEOGEN_API_JWT_SECRET"}
    holders = {name for name, data in secrets.items() if "VIDEOGEN_API_JWT_SECRET" in data}
    assert holders == {"videogen-api"}
    # The code location and every run pod get these Secrets whole (includeConfigInLaunchedRuns).
    user_code = helm_values()["dagster-user-deployments"]["deployments"][0]
    assert "videogen-api" not in {s["name"] for s in user_code["envSecrets"]}


def test_the_secrets_template_says_how_to_generate_the_jwt_key():
    text = (K8S_DIR / "secrets" / "secrets.example.yaml").read_text()
    comment = text.split("name: videogen-api")[0].rsplit("---", 1)[-1]
    assert "openssl rand -hex 32" in comment


def test_api_reads_the_configuration_of_the_other_videogen_pods(deployment):
    container = api_container(deployment)
    maps = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
    assert maps == SHARED_CONFIG_MAPS
    user_code = helm_values()["dagster-user-deployments"]["deployments"][0]
    assert maps == [m["name"] for m in user_code["envConfigMaps"]]
    for name in maps:
        assert name in config_maps(), f"ConfigMap {name} is not defined under k8s/"


def test_api_pod_environment_is_a_complete_production_profile(deployment):
    """The pod's environment, resolved from the ConfigMaps and the (filled-in) Secrets template."""
    from videogen.deploy.profile import production_problems

    secrets = template_secrets()
    placeholder = secrets["videogen-api"]["VIDEOGEN_API_JWT_SECRET"]
    # What the template tells the operator to put there: `openssl rand -hex 32`.
    secrets["videogen-api"]["VIDEOGEN_API_JWT_SECRET"] = secrets_module.token_hex(32)
    env = pod_environment(deployment, config_maps(), secrets)
    assert env["VIDEOGEN_PROFILE"] == "production"
    assert env["VIDEOGEN_API_JWT_SECRET"] == secrets["videogen-api"]["VIDEOGEN_API_JWT_SECRET"]
    assert production_problems(env) == []
    # A forgotten placeholder is no usable signing key: the settings refuse it (too short), so the
    # API does not start with a key that is public in this repository.
    from videogen.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="VIDEOGEN_API_JWT_SECRET"):
        load_settings({**env, "VIDEOGEN_API_JWT_SECRET": placeholder})


# The variables the kubelet adds to a container for every Service of its namespace
# (enableServiceLinks, default true; pkg/kubelet/envvars): <NAME>_SERVICE_HOST, <NAME>_PORT, ...
def service_link_variables(service: dict[str, Any]) -> set[str]:
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in service["spec"]["ports"]:
        protocol = port.get("protocol", "TCP")
        if port.get("name"):
            names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
        base = f"{prefix}_PORT_{port['port']}_{protocol}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
    return names


def test_service_link_variables_of_the_api_collide_with_no_setting(objects):
    """Every pod of the namespace that keeps service links (the code location, the run pods, the Ray
    pods, a `kubectl run` of the cpu image) receives VIDEOGEN_API_PORT=tcp://<ip>:80 and the like
    once the Service videogen-api exists: none of them may be a variable the settings read."""
    from videogen.config import Settings

    setting_variables = {field.validation_alias or name for name, field in Settings.model_fields.items()}
    links = service_link_variables(the(objects, "Service"))
    assert "VIDEOGEN_API_PORT" in links and "VIDEOGEN_API_SERVICE_PORT_HTTP" in links  # the rule itself
    assert sorted(links & setting_variables) == []


def test_model_registry_is_mounted_where_the_configuration_points(deployment):
    registry = config_maps()["videogen-config"]["VIDEOGEN_MODEL_REGISTRY"]
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = [m for m in api_container(deployment)["volumeMounts"] if m["mountPath"] == posixpath.dirname(registry)]
    assert len(mounts) == 1 and mounts[0].get("readOnly") is True
    source = volumes[mounts[0]["name"]]["configMap"]["name"]
    assert posixpath.basename(registry) in config_maps()[source]


# --- pod security ------------------------------------------------------------------------------------


def test_pod_runs_as_the_image_user_and_meets_the_restricted_standard(deployment):
    from tests.deploy.test_dockerfile import DOCKERFILE, parse_dockerfile

    spec = deployment["spec"]["template"]["spec"]
    pod, container = spec["securityContext"], api_container(deployment)["securityContext"]
    image_uid = int(parse_dockerfile(DOCKERFILE.read_text()).effective_user("cpu").split(":")[0])
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == image_uid != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False  # the API never calls the Kubernetes API
    # A read-only root filesystem needs a writable /tmp (tempfile, spooled uploads).
    if container.get("readOnlyRootFilesystem"):
        tmp = [m for m in api_container(deployment)["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1 and "emptyDir" in {v["name"]: v for v in spec["volumes"]}[tmp[0]["name"]]
    # Service links would add VIDEOGEN_API_PORT=tcp://... & co., inside the settings' prefix.
    assert spec["enableServiceLinks"] is False


# --- Service, autoscaler, disruption budget --------------------------------------------------------------


def test_service_sends_port_80_to_the_named_port_of_the_api_pods(objects, deployment):
    assert service_problems(the(objects, "Service"), deployment) == []


def test_service_selects_no_other_pods_of_the_deployment(objects):
    selector = the(objects, "Service")["spec"]["selector"]
    templates = [
        (o["kind"], o["metadata"]["name"], o["spec"]["template"]["metadata"].get("labels", {}))
        for o in other_objects() if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]
    assert templates, "the other workloads were not found"
    assert [(kind, name) for kind, name, labels in templates if selects(selector, labels)] == []


@pytest.mark.parametrize(
    "mutate",
    [lambda s, d: s["spec"]["selector"].update({"app.kubernetes.io/name": "videogen"}),
     lambda s, d: s["spec"]["ports"][0].update({"targetPort": "web"}),
     lambda s, d: s["spec"]["ports"][0].update({"targetPort": PORT}),
     lambda s, d: s["spec"].update({"type": "LoadBalancer"}),
     lambda s, d: d["spec"]["template"]["metadata"]["labels"].pop("app.kubernetes.io/name")],
    ids=["foreign-selector", "unknown-port-name", "numeric-target-port", "load-balancer", "pod-label-gone"],
)
def test_service_check_catches_a_broken_service(objects, deployment, mutate):
    service = the(objects, "Service")
    mutate(service, deployment)
    assert service_problems(service, deployment)


def test_autoscaler_scales_the_deployment_on_cpu(objects, deployment):
    assert autoscaler_problems(the(objects, "HorizontalPodAutoscaler"), deployment) == []


@pytest.mark.parametrize(
    "mutate",
    [lambda h, d: h["spec"]["scaleTargetRef"].update({"name": "videogen"}),
     lambda h, d: h["spec"]["scaleTargetRef"].update({"kind": "StatefulSet"}),
     lambda h, d: h["spec"].update({"minReplicas": 1}),
     lambda h, d: h["spec"]["metrics"][0]["resource"]["target"].update({"averageUtilization": 90}),
     lambda h, d: api_container(d)["resources"]["requests"].pop("cpu"),
     lambda h, d: d["spec"].update({"replicas": 2})],
    ids=["other-name", "other-kind", "min-1", "cpu-90", "no-cpu-request", "deployment-replicas"],
)
def test_autoscaler_check_catches_a_broken_autoscaler(objects, deployment, mutate):
    hpa = the(objects, "HorizontalPodAutoscaler")
    mutate(hpa, deployment)
    assert autoscaler_problems(hpa, deployment)


def test_disruption_budget_keeps_one_pod_and_lets_a_drain_proceed(objects, deployment):
    pdb = the(objects, "PodDisruptionBudget")
    hpa = the(objects, "HorizontalPodAutoscaler")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    # minAvailable below the smallest replica count: a node drain can always evict one pod.
    assert pdb["spec"]["minAvailable"] == 1 < hpa["spec"]["minReplicas"]
