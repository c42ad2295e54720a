"""Only the generation step holds a GPU: the executor config and tags computed by videogen.deploy.k8s,
rendered into the Kubernetes Jobs dagster-k8s would create, and validated offline."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.deploy import chart
from tests.deploy.kube import KUBERNETES_VERSION, newest_schema_version, validate_k8s
from videogen.deploy.k8s import (
    GENERATION_STEP,
    GPU_COUNT_TAG,
    GPU_SLOT_TAG,
    MODEL_TAG,
    PIPELINE_STEPS,
    USER_TAG,
    GpuPlacement,
    run_config_for_model,
    run_tags_for_model,
)
from videogen.generation.registry import BUILTIN_MODELS, ModelResources, ModelSpec

GPU_IMAGE = "registry.example.com/videogen:0.1.0-gpu"
PLACEMENT = GpuPlacement(gpu_image=GPU_IMAGE, namespace="videogen")
OTHER_STEPS = [step for step in PIPELINE_STEPS if step != GENERATION_STEP]


def _model(name: str, gpus: int, gpu_memory_gib: int = 40, cpu: str = "8", memory: str = "64Gi") -> ModelSpec:
    return ModelSpec(name=name, source=name, pipeline_class="LTXPipeline",
                     resources=ModelResources(gpu_count=gpus, gpu_memory_gib=gpu_memory_gib, cpu=cpu, memory=memory))


MODELS = {
    "tiny": BUILTIN_MODELS["tiny"],
    "one-gpu": _model("ltx-video", 1),
    "two-gpus": _model("wan-14b", 2, gpu_memory_gib=80, cpu="16", memory="128Gi"),
}


def _pipeline_op_names() -> list[str]:
    from pipelines.generate_video import generate_video

    return [node.name for node in generate_video.graph.nodes]


def _op_tags(step: str) -> dict[str, str]:
    from pipelines.generate_video import generate_video

    return dict(generate_video.graph.node_named(step).definition.tags)


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def test_pipeline_steps_match_the_generate_video_job():
    assert sorted(PIPELINE_STEPS) == sorted(_pipeline_op_names())


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_run_config_is_valid_k8s_job_executor_config(model):
    """The run config passes the config schema of dagster-k8s's k8s_job_executor for a job with
    the ops of generate_video (the sensor merges it into each RunRequest)."""
    from dagster_k8s import k8s_job_executor

    def make_op(name: str) -> dg.OpDefinition:
        @dg.op(name=name)
        def _op() -> None:
            return None

        return _op

    ops = [make_op(name) for name in _pipeline_op_names()]

    @dg.job(executor_def=k8s_job_executor)
    def generate_video_on_k8s() -> None:
        for op in ops:
            op()

    dg.validate_run_config(generate_video_on_k8s, run_config_for_model(model, PLACEMENT))


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("step", PIPELINE_STEPS)
def test_every_step_pod_is_a_valid_kubernetes_job(model, step):
    executor_config = run_config_for_model(model, PLACEMENT)["execution"]["config"]
    job = chart.render_step_job(step, executor_config, _op_tags(step))
    validate_k8s(job, KUBERNETES_VERSION)
    validate_k8s(job, newest_schema_version())


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_generation_step_pod_gets_the_models_gpus_node_pool_and_cache(model):
    executor_config = run_config_for_model(model, PLACEMENT)["execution"]["config"]
    job = chart.render_step_job(GENERATION_STEP, executor_config, _op_tags(GENERATION_STEP))
    pod = job["spec"]["template"]["spec"]
    container = _container(job)
    resources = model.resources

    assert job["metadata"]["namespace"] == "videogen"
    assert container["image"] == GPU_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(resources.gpu_count)
    assert container["resources"]["limits"]["memory"] == resources.memory
    assert container["resources"]["requests"] == {"cpu": resources.cpu, "memory": resources.memory}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(resources.gpu_memory_gib * 1024 - 1)]}
    ]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["model-cache"] == {"name": "model-cache", "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "videogen-model-cache", "readOnly": True}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VIDEOGEN_DEVICE"] == "cuda"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert job["spec"]["template"]["metadata"]["labels"]["videogen/step-kind"] == "gpu"


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("step", OTHER_STEPS)
def test_other_steps_hold_no_gpu(model, step):
    executor_config = run_config_for_model(model, PLACEMENT)["execution"]["config"]
    job = chart.render_step_job(step, executor_config, _op_tags(step))
    pod = job["spec"]["template"]["spec"]
    container = _container(job)

    assert "nvidia.com/gpu" not in json.dumps(job)
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod
    assert container["image"] == chart.user_code_image()  # the CPU image
    assert "model-cache" not in {v["name"] for v in pod["volumes"]}
    assert job["spec"]["template"]["metadata"]["labels"]["videogen/step-kind"] == "cpu"


@pytest.mark.parametrize("step", PIPELINE_STEPS)
def test_every_step_shares_the_scratch_volume_for_step_outputs(step):
    executor_config = run_config_for_model(MODELS["tiny"], PLACEMENT)["execution"]["config"]
    job = chart.render_step_job(step, executor_config, _op_tags(step))
    mounts = {m["name"]: m["mountPath"] for m in _container(job)["volumeMounts"]}
    assert mounts["step-scratch"] == "/opt/dagster/dagster_home/storage"  # fs_io_manager's base dir
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in job["spec"]["template"]["spec"]["volumes"]}
    assert claims["step-scratch"] == "videogen-scratch"


def test_encoding_gets_more_cpu_and_memory_than_the_bookkeeping_steps():
    executor_config = run_config_for_model(MODELS["tiny"], PLACEMENT)["execution"]["config"]
    encode = _container(chart.render_step_job("encode_video", executor_config))["resources"]
    finalize = _container(chart.render_step_job("finalize_job", executor_config))["resources"]
    assert encode["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert finalize["limits"] == {"cpu": "1", "memory": "1Gi"}


def test_a_cpu_only_model_gets_no_gpu_and_no_gpu_slot():
    cpu_model = _model("cpu-only", 0, gpu_memory_gib=0, cpu="4", memory="16Gi")
    executor_config = run_config_for_model(cpu_model, PLACEMENT)["execution"]["config"]
    job = chart.render_step_job(GENERATION_STEP, executor_config)
    validate_k8s(job)
    assert "nvidia.com/gpu" not in json.dumps(job)
    assert _container(job)["image"] == chart.user_code_image()
    assert run_tags_for_model(cpu_model, "u1")[GPU_SLOT_TAG] == "false"


def test_run_tags_carry_the_queue_limits_keys():
    tags = run_tags_for_model(MODELS["two-gpus"], "user-" + "x" * 100)
    assert tags == {GPU_SLOT_TAG: "true", GPU_COUNT_TAG: "2", USER_TAG: ("user-" + "x" * 100)[:63], MODEL_TAG: "wan-14b"}
    assert all(isinstance(value, str) for value in tags.values())


def test_tag_keys_match_the_sensor_and_the_local_run_queue():
    from sensors import job_requests

    job = {"id": 7, "user_id": "u1", "model": "tiny", "priority": 3}
    for spec in (MODELS["one-gpu"], None):  # a registered model, and an unknown one (rejected later)
        tags = job_requests.run_tags(job, spec)
        assert tags[GPU_SLOT_TAG] == "true" and tags[USER_TAG] == "u1" and MODEL_TAG in tags
        assert tags["dagster/priority"] == "3" and tags["videogen/job_id"] == "7"
    local = yaml.safe_load((Path(__file__).resolve().parents[2] / "dagster_home" / "dagster.yaml").read_text())
    local_keys = {limit["key"] for limit in local["run_coordinator"]["config"]["tag_concurrency_limits"]}
    assert {GPU_SLOT_TAG, USER_TAG} <= local_keys


def test_run_pod_of_a_generation_run_holds_no_gpu():
    """The run worker only launches step Jobs: the run tags must not make it a GPU pod."""
    job = chart.render_run_job(run_tags_for_model(MODELS["two-gpus"], "u1"))
    validate_k8s(job)
    assert "nvidia.com/gpu" not in json.dumps(job)


def test_placement_from_env_overrides_and_disables():
    placement = GpuPlacement.from_env({
        "VIDEOGEN_GPU_IMAGE": GPU_IMAGE,
        "VIDEOGEN_K8S_NAMESPACE": "gen",
        "VIDEOGEN_GPU_NODE_SELECTOR": "cloud.google.com/gke-accelerator=nvidia-l4, pool=gpu",
        "VIDEOGEN_GPU_TAINT_KEY": "",
        "VIDEOGEN_GPU_MEMORY_LABEL": "",
        "VIDEOGEN_MODEL_CACHE_CLAIM": "weights",
    })
    config = run_config_for_model(MODELS["one-gpu"], placement)["execution"]["config"]
    assert config["job_namespace"] == "gen"
    pod_spec = config["per_step_k8s_config"][GENERATION_STEP]["pod_spec_config"]
    assert pod_spec["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"}
    assert "tolerations" not in pod_spec and "affinity" not in pod_spec
    assert pod_spec["volumes"][0]["persistent_volume_claim"]["claim_name"] == "weights"
    job = chart.render_step_job(GENERATION_STEP, config)
    validate_k8s(job)


def test_placement_defaults_match_the_manifests():
    defaults = GpuPlacement()
    from_config = GpuPlacement.from_env({k: v for k, v in _config_map().items() if k != "VIDEOGEN_GPU_IMAGE"})
    assert from_config == GpuPlacement(namespace="videogen", model_cache_path="/models")
    assert (defaults.model_cache_claim, defaults.scratch_claim) == ("videogen-model-cache", "videogen-scratch")


def _config_map() -> dict[str, str]:
    from tests.deploy.kube import K8S_DIR, load_documents

    (config,) = load_documents(K8S_DIR / "manifests" / "config.yaml")
    return config["data"]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (ModelResources(gpu_count=-1), "gpu_count"),
        (ModelResources(cpu="four"), "resources.cpu"),
        (ModelResources(memory="32 GB"), "resources.memory"),
    ],
)
def test_bad_model_resources_are_refused_with_the_field_named(resources, message):
    spec = ModelSpec(name="bad", source="bad", pipeline_class="LTXPipeline", resources=resources)
    with pytest.raises(ValueError, match=message):
        run_config_for_model(spec, PLACEMENT)


def test_a_malformed_node_selector_is_refused():
    with pytest.raises(ValueError, match="VIDEOGEN_GPU_NODE_SELECTOR"):
        GpuPlacement.from_env({"VIDEOGEN_GPU_NODE_SELECTOR": "nvidia.com/gpu.present"})


def test_run_config_is_json_serializable_for_the_run_request():
    json.dumps(run_config_for_model(MODELS["one-gpu"], PLACEMENT))
