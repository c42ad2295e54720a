"""Where each step of a ``generate_video`` run runs on Kubernetes, computed from the model registry.

Decision: the production code location runs ``generate_video`` with dagster-k8s's
``k8s_job_executor`` (one Kubernetes Job per step), not with the run launcher alone (one pod for the
whole run). With one pod per run, the GPU would be held while the prompt is validated, the video
encoded and uploaded and the status written; with one pod per step only ``generate_frames`` asks for
``nvidia.com/gpu`` and the other four steps run in small CPU pods on ordinary nodes.

The per-model GPU needs (``ModelSpec.resources``: GPU count, GPU memory, CPU, memory) reach the
generation pod through run config, which the sensor merges into each RunRequest::

    execution:
      config:
        step_k8s_config: ...              # every step: small CPU pod, shared scratch volume
        per_step_k8s_config:
          generate_frames: ...            # GPU limit, node selector, tolerations, model cache
          encode_video: ...               # more CPU/memory for ffmpeg

(key names from ``dagster_k8s.executor._K8S_EXECUTOR_CONFIG_SCHEMA``, dagster-k8s 0.29.27). Run
config, not op tags, because op tags are fixed when the code location loads while the model, and so
the GPU count, is chosen per request. The K8s executor deep-merges ``per_step_k8s_config`` onto
``step_k8s_config`` (``K8sContainerContext.merge``), so a step without an entry keeps the CPU default.

Step pods do not share a filesystem, so step outputs (frames, encoded bytes) travel through the IO
manager's storage: the default ``fs_io_manager`` writes under ``$DAGSTER_HOME/storage``, which every
step pod mounts from one ReadWriteMany claim (``GpuPlacement.scratch_claim``).

The run tags (:func:`run_tags_for_model`) are what the QueuedRunCoordinator limits on: the GPU slot
tag, the per-user tag and the model tag. Their keys match ``sensors/job_requests.py`` and the
``tagConcurrencyLimits`` of ``k8s/helm/values.yaml`` and ``dagster_home/dagster.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from videogen.generation.registry import ModelSpec

# The ops of pipelines/generate_video.py, in order. Only the generation step holds a GPU.
GENERATION_STEP = "generate_frames"
PIPELINE_STEPS = ("validate_prompt", GENERATION_STEP, "encode_video", "upload_outputs", "finalize_job")

# Run tags the run queue limits on (see the module docstring).
GPU_SLOT_TAG = "videogen/gpu"
GPU_COUNT_TAG = "videogen/gpus"
USER_TAG = "videogen/user"
MODEL_TAG = "videogen/model"
_TAG_VALUE_MAX = 63

GPU_RESOURCE = "nvidia.com/gpu"
# Labels published by NVIDIA GPU Feature Discovery (part of the NVIDIA GPU Operator).
GFD_GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GFD_GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, e.g. "81920"

# The image's non-root user (Dockerfile) and DAGSTER_HOME (Helm chart default global.dagsterHome).
IMAGE_UID = 10001
DAGSTER_HOME = "/opt/dagster/dagster_home"

MODEL_CACHE_VOLUME = "model-cache"
SCRATCH_VOLUME = "step-scratch"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


@dataclass(frozen=True)
class StepResources:
    """Requests and limits of one step container (Kubernetes quantities)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def as_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


# validate_prompt, upload_outputs and finalize_job only talk to PostgreSQL and the bucket.
CPU_STEP_RESOURCES = StepResources(cpu_request="250m", memory_request="512Mi", cpu_limit="1", memory_limit="1Gi")
# encode_video holds the decoded frames (up to 257 x 720 x 1280 x 3 bytes, ~700 MB) and runs ffmpeg.
CPU_STEP_OVERRIDES: Mapping[str, StepResources] = MappingProxyType(
    {"encode_video": StepResources(cpu_request="1", memory_request="2Gi", cpu_limit="2", memory_limit="4Gi")}
)


@dataclass(frozen=True)
class GpuPlacement:
    """How the cluster is laid out: which nodes have GPUs, which claims hold the caches.

    The defaults describe a cluster with the NVIDIA GPU Operator (GPU nodes labelled
    ``nvidia.com/gpu.present=true`` and tainted ``nvidia.com/gpu:NoSchedule``) and the claims of
    ``k8s/manifests/storage.yaml``; :meth:`from_env` reads overrides.
    """

    # Image of the generation step (the Dockerfile's ``gpu`` target). None: the code location's
    # image, i.e. the CPU image, which cannot use a GPU; production sets VIDEOGEN_GPU_IMAGE.
    gpu_image: str | None = None
    namespace: str | None = None  # None: the run launcher's job namespace
    node_selector: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({GFD_GPU_PRESENT_LABEL: "true"})
    )
    # Taint key the GPU node pool carries; the generation pod tolerates it (operator Exists).
    gpu_taint_key: str | None = GPU_RESOURCE
    # Node label giving each node's GPU memory in MiB; None disables the memory affinity.
    gpu_memory_label: str | None = GFD_GPU_MEMORY_LABEL
    model_cache_claim: str = "videogen-model-cache"
    model_cache_path: str = "/models"
    scratch_claim: str = "videogen-scratch"
    scratch_path: str = f"{DAGSTER_HOME}/storage"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GpuPlacement:
        """Overrides from ``VIDEOGEN_GPU_*`` / ``VIDEOGEN_*_CLAIM`` variables (see docs/kubernetes.md)."""
        defaults = cls()
        return cls(
            gpu_image=env.get("VIDEOGEN_GPU_IMAGE") or None,
            namespace=env.get("VIDEOGEN_K8S_NAMESPACE") or None,
            node_selector=MappingProxyType(
                _parse_selector(env["VIDEOGEN_GPU_NODE_SELECTOR"], "VIDEOGEN_GPU_NODE_SELECTOR")
                if "VIDEOGEN_GPU_NODE_SELECTOR" in env
                else dict(defaults.node_selector)
            ),
            gpu_taint_key=_optional(env, "VIDEOGEN_GPU_TAINT_KEY", defaults.gpu_taint_key),
            gpu_memory_label=_optional(env, "VIDEOGEN_GPU_MEMORY_LABEL", defaults.gpu_memory_label),
            model_cache_claim=env.get("VIDEOGEN_MODEL_CACHE_CLAIM") or defaults.model_cache_claim,
            model_cache_path=env.get("VIDEOGEN_MODEL_CACHE") or defaults.model_cache_path,
            scratch_claim=env.get("VIDEOGEN_SCRATCH_CLAIM") or defaults.scratch_claim,
        )


def _optional(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """Unset: the default; set to an empty string: disabled."""
    if name not in env:
        return default
    return env[name].strip() or None


def _parse_selector(raw: str, variable: str) -> dict[str, str]:
    """``"key=value,key2=value2"`` → dict; an empty string means no node selector."""
    selector: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{variable} must look like 'label=value,label2=value2', got {raw!r}")
        selector[key.strip()] = value.strip()
    return selector


def _check_quantity(value: str, what: str, model: str) -> str:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise ValueError(
            f"model {model!r}: resources.{what} must be a Kubernetes quantity such as '4', '500m' or '32Gi', got {value!r}"
        )
    return value


def _label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:_TAG_VALUE_MAX]
    return cleaned.strip("-_.") or "unknown"


def _pod_security() -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod security context, container security context): the image's non-root user, no escalation.

    ``fs_group`` makes the mounted claims writable by that user.
    """
    pod = {
        "run_as_non_root": True,
        "run_as_user": IMAGE_UID,
        "run_as_group": IMAGE_UID,
        "fs_group": IMAGE_UID,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }
    container = {"allow_privilege_escalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def default_step_k8s_config(placement: GpuPlacement) -> dict[str, Any]:
    """``step_k8s_config``: what every step pod gets (a small CPU pod with the shared scratch claim)."""
    pod_security, container_security = _pod_security()
    return {
        "container_config": {
            "resources": CPU_STEP_RESOURCES.as_k8s(),
            "security_context": container_security,
            "volume_mounts": [{"name": SCRATCH_VOLUME, "mount_path": placement.scratch_path}],
        },
        "pod_spec_config": {
            "security_context": pod_security,
            "volumes": [
                {"name": SCRATCH_VOLUME, "persistent_volume_claim": {"claim_name": placement.scratch_claim}}
            ],
        },
        "pod_template_spec_metadata": {"labels": {"videogen/step-kind": "cpu"}},
    }


def generation_step_k8s_config(spec: ModelSpec, placement: GpuPlacement) -> dict[str, Any]:
    """The ``per_step_k8s_config`` entry of ``generate_frames`` for this model.

    GPU count, CPU and memory come from ``spec.resources``; memory and CPU requests equal their
    limits (Guaranteed QoS: a long generation is the last pod evicted under node pressure).
    ``gpu_memory_gib`` becomes a node affinity on the GPU memory label, so a model is never placed
    on a card too small for it. A model with ``gpu_count == 0`` runs on CPU nodes.
    """
    resources = spec.resources
    if not isinstance(resources.gpu_count, int) or resources.gpu_count < 0:
        raise ValueError(f"model {spec.name!r}: resources.gpu_count must be an integer >= 0, got {resources.gpu_count!r}")
    cpu = _check_quantity(resources.cpu, "cpu", spec.name)
    memory = _check_quantity(resources.memory, "memory", spec.name)
    uses_gpu = resources.gpu_count > 0

    limits = {"cpu": cpu, "memory": memory}
    if uses_gpu:
        # Extended resources are set as limits only; Kubernetes makes the request equal.
        limits[GPU_RESOURCE] = str(resources.gpu_count)

    container_config: dict[str, Any] = {
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
        "volume_mounts": [
            # Read-only: many generation pods share the weights; they are written by the add-model Job.
            {"name": MODEL_CACHE_VOLUME, "mount_path": placement.model_cache_path, "read_only": True}
        ],
        "env": [
            {"name": "VIDEOGEN_MODEL_CACHE", "value": placement.model_cache_path},
            # Fail loudly on a node without a usable GPU instead of generating on CPU for hours.
            {"name": "VIDEOGEN_DEVICE", "value": "cuda" if uses_gpu else "cpu"},
        ],
    }
    if uses_gpu and placement.gpu_image:
        container_config["image"] = placement.gpu_image

    pod_spec_config: dict[str, Any] = {
        "volumes": [
            {
                "name": MODEL_CACHE_VOLUME,
                "persistent_volume_claim": {"claim_name": placement.model_cache_claim, "read_only": True},
            }
        ]
    }
    if uses_gpu:
        if placement.node_selector:
            pod_spec_config["node_selector"] = dict(placement.node_selector)
        if placement.gpu_taint_key:
            pod_spec_config["tolerations"] = [
                {"key": placement.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}
            ]
        if placement.gpu_memory_label and resources.gpu_memory_gib:
            # Gt is strict: the node's GPU memory (MiB) must be at least the model's need.
            needed_mib = int(resources.gpu_memory_gib) * 1024
            pod_spec_config["affinity"] = {
                "node_affinity": {
                    "required_during_scheduling_ignored_during_execution": {
                        "node_selector_terms": [
                            {
                                "match_expressions": [
                                    {"key": placement.gpu_memory_label, "operator": "Gt", "values": [str(needed_mib - 1)]}
                                ]
                            }
                        ]
                    }
                }
            }

    return {
        "container_config": container_config,
        "pod_spec_config": pod_spec_config,
        "pod_template_spec_metadata": {
            "labels": {"videogen/step-kind": "gpu" if uses_gpu else "cpu", "videogen/model": _label_value(spec.name)},
            # The cluster autoscaler must not evict a generation to pack nodes.
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        },
    }


def cpu_step_k8s_config(step: str) -> dict[str, Any]:
    """The ``per_step_k8s_config`` entry of a CPU step that needs more than the default."""
    return {"container_config": {"resources": CPU_STEP_OVERRIDES[step].as_k8s()}}


def executor_config_for_model(spec: ModelSpec, placement: GpuPlacement) -> dict[str, Any]:
    """``execution.config`` of ``k8s_job_executor`` for a run that generates with ``spec``."""
    per_step: dict[str, Any] = {GENERATION_STEP: generation_step_k8s_config(spec, placement)}
    per_step.update({step: cpu_step_k8s_config(step) for step in CPU_STEP_OVERRIDES})
    config: dict[str, Any] = {
        "step_k8s_config": default_step_k8s_config(placement),
        "per_step_k8s_config": per_step,
    }
    if placement.namespace:
        config["job_namespace"] = placement.namespace
    return config


def run_config_for_model(spec: ModelSpec, placement: GpuPlacement | None = None) -> dict[str, Any]:
    """Run config to merge into a ``generate_video`` RunRequest in the production profile.

    Requires the job to run with ``dagster_k8s.k8s_job_executor`` (the production code location's
    executor). ``placement`` defaults to :class:`GpuPlacement`'s documented defaults; production
    passes ``GpuPlacement.from_env(os.environ)`` (or ``load_profile(...).placement``).
    """
    placement = placement if placement is not None else GpuPlacement()
    return {"execution": {"config": executor_config_for_model(spec, placement)}}


def run_tags_for_model(spec: ModelSpec, user_id: object) -> dict[str, str]:
    """Tags the QueuedRunCoordinator limits on: a GPU slot (when the model uses a GPU), the user, the model.

    ``videogen/gpus`` carries the GPU count, so a cluster can cap multi-GPU models separately
    (``tagConcurrencyLimits: [{key: videogen/gpus, value: "2", limit: 1}]``).
    """
    gpu_count = spec.resources.gpu_count
    return {
        GPU_SLOT_TAG: "true" if gpu_count > 0 else "false",
        GPU_COUNT_TAG: str(gpu_count),
        USER_TAG: str(user_id)[:_TAG_VALUE_MAX],
        MODEL_TAG: spec.name[:_TAG_VALUE_MAX],
    }
