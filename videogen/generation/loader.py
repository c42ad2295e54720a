"""Load a registered model into a ready-to-call diffusers pipeline.

This is the real loading path for every model, the offline ``tiny`` one included:
``<PipelineClass>.from_pretrained(path_or_id, local_files_only=..., dtype=...)``, bf16 on CUDA and
float32 on CPU, optional model CPU offload and VAE tiling. The only difference for the random-weight
models is that their directory is built first when it does not exist yet.

torch and diffusers are imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen.config import DEVICES
from videogen.generation.registry import ModelSpec


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is visible, else ``"cpu"``; an explicit choice is checked."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    import torch

    cuda_available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise RuntimeError("VIDEOGEN_DEVICE=cuda but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def ensure_offline_model(spec: ModelSpec, model_cache: Path) -> None:
    """Build a random-weight model's directory if its spec names an offline builder and it is missing."""
    if spec.offline_builder is None:
        return
    from videogen.generation.tiny_model import OFFLINE_BUILDERS

    builder = OFFLINE_BUILDERS.get(spec.offline_builder)
    if builder is None:
        raise ValueError(
            f"model {spec.name!r} names unknown offline builder {spec.offline_builder!r}; "
            f"known: {', '.join(sorted(OFFLINE_BUILDERS))}"
        )
    target_dir = Path(spec.resolve_source(model_cache))
    # The builder saves atomically, so an existing model_index.json means a complete model.
    if not (target_dir / "model_index.json").exists():
        builder(target_dir)


def load_pipeline(spec: ModelSpec, *, model_cache: Path, device: str, cpu_offload: bool, vae_tiling: bool) -> Any:
    """Load ``spec``'s diffusers pipeline, placed on ``device`` and configured for inference.

    ``cpu_offload`` (``enable_model_cpu_offload``) only applies on CUDA: on CPU the weights already
    live in host memory. ``vae_tiling`` applies everywhere the VAE supports it (it decodes large frames
    tile by tile; frames smaller than one tile are decoded as before).
    """
    import diffusers
    import torch

    resolved_device = resolve_device(device)
    pipeline_class = getattr(diffusers, spec.pipeline_class, None)
    if pipeline_class is None:
        raise ValueError(f"model {spec.name!r}: diffusers has no pipeline class {spec.pipeline_class!r}")
    ensure_offline_model(spec, model_cache)
    source = spec.resolve_source(model_cache)

    load_kwargs: dict[str, Any] = {
        "local_files_only": spec.local_files_only,
        # bf16 halves GPU memory with no visible quality loss for these models; CPU kernels are
        # fastest (and bit-reproducible) in float32.
        "dtype": torch.bfloat16 if resolved_device == "cuda" else torch.float32,
    }
    if not Path(source).is_dir():
        # A revision selects a commit of a hub repository; a local directory has none.
        load_kwargs["revision"] = spec.revision
    pipeline = pipeline_class.from_pretrained(source, **load_kwargs)

    if resolved_device == "cuda" and cpu_offload:
        # Moves each sub-model to the GPU only while it runs; must replace .to("cuda"), not follow it.
        pipeline.enable_model_cpu_offload()
    else:
        pipeline.to(resolved_device)
    if vae_tiling and hasattr(getattr(pipeline, "vae", None), "enable_tiling"):
        pipeline.vae.enable_tiling()
    # Progress is reported through generate_frames' on_step callback, not a tqdm bar on stderr.
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@dataclass(frozen=True)
class PipelineKey:
    model_name: str
    revision: str
    source: str
    device: str
    cpu_offload: bool
    vae_tiling: bool


class PipelineCache:
    """Keeps loaded pipelines of a long-lived process so that consecutive jobs skip the load.

    Loading a production model takes tens of seconds and gigabytes of (GPU) memory, so a worker that
    runs several jobs keeps the pipeline. One instance is owned by whoever runs the jobs (e.g. a
    Dagster resource) and passed explicitly; there is no module-level cache. ``max_entries`` bounds
    memory: loading a new configuration beyond it drops the least recently used one (the resource's
    default is ``VIDEOGEN_PIPELINE_CACHE_SIZE``, see :class:`videogen.config.Settings`).

    The lock serialises loading only; calling one pipeline from several threads at once is not safe.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._pipelines: dict[PipelineKey, Any] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec, *, model_cache: Path, device: str, cpu_offload: bool, vae_tiling: bool) -> Any:
        key = PipelineKey(
            model_name=spec.name,
            revision=spec.revision,
            source=spec.resolve_source(model_cache),
            device=resolve_device(device),
            cpu_offload=cpu_offload,
            vae_tiling=vae_tiling,
        )
        with self._lock:
            pipeline = self._pipelines.pop(key, None)
            if pipeline is None:
                if len(self._pipelines) >= self.max_entries:
                    self._evict_least_recently_used(keep=self.max_entries - 1)
                pipeline = load_pipeline(
                    spec, model_cache=model_cache, device=key.device, cpu_offload=cpu_offload, vae_tiling=vae_tiling
                )
            self._pipelines[key] = pipeline
            return pipeline

    def _evict_least_recently_used(self, keep: int) -> None:
        # dicts keep insertion order and hits are re-inserted, so the first keys are the LRU ones.
        while len(self._pipelines) > keep:
            del self._pipelines[next(iter(self._pipelines))]
        # Give the evicted weights' GPU memory back before the next model is loaded into it.
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def __len__(self) -> int:
        return len(self._pipelines)

    def clear(self) -> None:
        with self._lock:
            self._evict_least_recently_used(keep=0)
