"""Model registry and diffusers pipelines for the generation step."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from videogen.generation.registry import ModelRegistry


class GenerationResource(dg.ConfigurableResource):
    model_cache: str = Field(description="Folder of the model cache (models load from here, offline).")
    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cuda' or 'cpu'.")
    cpu_offload: bool = Field(default=False, description="Offload idle sub-models to CPU (less GPU memory).")
    vae_tiling: bool = Field(default=False, description="Decode the VAE in tiles (large frames on small GPUs).")
    model_registry_path: str = Field(default="", description="JSON file with extra model specs (optional).")

    # Loaded pipelines, per model, for the life of this process (a run may generate once, a
    # long-lived benchmark or worker many times; loading is the expensive part).
    _pipelines: dict[str, Any] = PrivateAttr(default_factory=dict)

    @cached_property
    def _registry(self) -> ModelRegistry:
        env = {"VIDEOGEN_MODEL_REGISTRY": self.model_registry_path} if self.model_registry_path else {}
        return ModelRegistry.from_env(env)

    def registry(self) -> ModelRegistry:
        return self._registry

    def pipeline(self, model: str) -> Any:
        if model not in self._pipelines:
            from videogen.generation.loader import load_pipeline

            spec = self._registry.get(model)
            if spec is None:
                raise KeyError(f"model {model!r} is not registered")
            self._pipelines[model] = load_pipeline(
                spec,
                model_cache=Path(self.model_cache),
                device=self.device,
                cpu_offload=self.cpu_offload,
                vae_tiling=self.vae_tiling,
            )
        return self._pipelines[model]


def generation_from_env() -> GenerationResource:
    from videogen.config import load_settings

    settings = load_settings()
    return GenerationResource(
        model_cache=str(settings.model_cache),
        device=settings.device,
        cpu_offload=settings.cpu_offload,
        vae_tiling=settings.vae_tiling,
        model_registry_path=settings.model_registry_path,
    )
