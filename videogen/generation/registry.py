"""Model registry: a name maps to how to load the model, its defaults and its limits.

Validation reads the limits, generation reads the loading recipe, and the Kubernetes profile reads
the GPU needs. Nothing here imports torch or diffusers.

Extra models are registered from a JSON file named by ``VIDEOGEN_MODEL_REGISTRY`` (a list of objects
with the fields of :class:`ModelSpec`; nested ``defaults``/``limits``/``resources`` objects), e.g. a
production LTX-Video::

    [{"name": "ltx-video", "source": "Lightricks/LTX-Video", "pipeline_class": "LTXPipeline",
      "revision": "main", "local_files_only": false,
      "defaults": {"width": 704, "height": 480, "num_frames": 121, "fps": 24, "steps": 40,
                   "guidance_scale": 3.0},
      "limits": {"max_width": 1280, "max_height": 720, "size_multiple": 32, "frame_multiple": 8,
                 "max_frames": 257},
      "resources": {"gpu_count": 1, "gpu_memory_gib": 40}}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelDefaults:
    width: int = 64
    height: int = 64
    num_frames: int = 9
    fps: int = 8
    steps: int = 4
    guidance_scale: float = 3.0


@dataclass(frozen=True)
class ModelLimits:
    min_width: int = 32
    max_width: int = 256
    min_height: int = 32
    max_height: int = 256
    size_multiple: int = 32  # width and height must be multiples of this (VAE/patch stride)
    frame_multiple: int = 8  # frame rule: num_frames = frame_multiple * k + 1
    min_frames: int = 1
    max_frames: int = 121
    min_fps: int = 1
    max_fps: int = 60
    min_steps: int = 1
    max_steps: int = 100
    min_guidance_scale: float = 0.0
    max_guidance_scale: float = 20.0


@dataclass(frozen=True)
class ModelResources:
    """What one generation step of this model needs on Kubernetes (read by the k8s profile)."""

    gpu_count: int = 1
    gpu_memory_gib: int = 24
    cpu: str = "4"
    memory: str = "32Gi"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # A local directory or a Hugging Face model id. Relative paths are resolved under the model cache.
    source: str
    pipeline_class: str
    revision: str = "main"
    local_files_only: bool = True
    # Name of a builder in videogen.generation.tiny_model that creates the weights offline when the
    # source directory does not exist yet (only for the random-weight test models).
    offline_builder: str | None = None
    description: str = ""
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    limits: ModelLimits = field(default_factory=ModelLimits)
    resources: ModelResources = field(default_factory=ModelResources)

    def resolve_source(self, model_cache: Path) -> str:
        """A local path under the model cache when the source is relative, else the hub id/path."""
        path = Path(self.source)
        if path.is_absolute():
            return str(path)
        cached = model_cache / self.source
        if self.offline_builder is not None or cached.exists():
            return str(cached)
        return self.source

    def recorded_source(self, model_cache: Path | None) -> tuple[str, str]:
        """Where :meth:`resolve_source` loads from, for records such as metadata.json: ``(location,
        source)``, never an absolute path of this machine.

        ``("model_cache", <path relative to the model cache>)``; ``("hub", <model id>)`` for a
        Hugging Face id (local_files_only then reads the hub cache); ``("local_directory", <its
        name>)`` for an absolute path outside the model cache. ``model_cache`` None: unknown, so an
        absolute path cannot be placed in it.
        """
        path = Path(self.source)
        if not path.is_absolute():
            if self.offline_builder is not None or (model_cache is not None and (model_cache / path).exists()):
                return "model_cache", path.as_posix()
            return "hub", self.source
        if model_cache is not None:  # compared as written (no file system access: this cannot fail)
            try:
                relative = Path(os.path.normpath(path)).relative_to(os.path.abspath(model_cache))
                return "model_cache", relative.as_posix()
            except ValueError:
                pass
        return "local_directory", path.name

    def to_dict(self) -> dict:
        return asdict(self)


BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="tiny",
            source="tiny-ltx-random-weights-v1",
            pipeline_class="LTXPipeline",
            revision="random-weights-v1",
            offline_builder="build_tiny_ltx",
            description="LTX-Video architecture with tiny random weights, built offline; its videos are noise.",
            defaults=ModelDefaults(width=64, height=64, num_frames=9, fps=8, steps=4, guidance_scale=3.0),
            limits=ModelLimits(max_width=256, max_height=256, max_frames=121),
            resources=ModelResources(gpu_count=1, gpu_memory_gib=8, cpu="2", memory="8Gi"),
        ),
    )
}


def _spec_from_dict(raw: dict) -> ModelSpec:
    raw = dict(raw)
    defaults = ModelDefaults(**raw.pop("defaults", {}))
    limits = ModelLimits(**raw.pop("limits", {}))
    resources = ModelResources(**raw.pop("resources", {}))
    return ModelSpec(**raw, defaults=defaults, limits=limits, resources=resources)


class ModelRegistry:
    def __init__(self, specs: dict[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None) -> "ModelRegistry":
        """The built-in models plus those of the JSON file ``path`` (none when empty)."""
        specs = dict(BUILTIN_MODELS)
        if path:
            for raw in json.loads(Path(path).read_text()):
                spec = _spec_from_dict(raw)
                specs[spec.name] = spec
        return cls(specs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ModelRegistry":
        """With the file ``VIDEOGEN_MODEL_REGISTRY`` names in ``env`` (default ``os.environ``)."""
        from videogen.config import load_settings  # pydantic-settings: not needed to import this module

        return cls.from_file(load_settings(env).model_registry_path)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> ModelSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[ModelSpec]:
        return [self._specs[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs


DEFAULT_MODEL = "tiny"
