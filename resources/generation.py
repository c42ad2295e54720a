"""Model registry and diffusers pipelines for the generation step."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from videogen.config import Device, load_settings, setting_default
from videogen.generation.loader import PipelineCache
from videogen.film.voices import VoiceRegistry
from videogen.generation.registry import ModelRegistry


class GenerationResource(dg.ConfigurableResource):
    """The defaults are :class:`videogen.config.Settings`'; :func:`generation_from_env` passes the loaded values.

    Pipelines load lazily (torch and diffusers are imported on the first :meth:`pipeline` call) into
    one :class:`~videogen.generation.loader.PipelineCache` for the life of this process: a run may
    generate once, a long-lived benchmark or worker many times, and loading is the expensive part.
    """

    model_cache: str = Field(description="Folder of the model cache (models load from here, offline).")
    device: Device = Field(default=setting_default("device"), description="'auto' (CUDA when present), 'cuda' or 'cpu'.")
    cpu_offload: bool = Field(default=setting_default("cpu_offload"),
                              description="Offload idle sub-models to CPU (less GPU memory).")
    vae_tiling: bool = Field(default=setting_default("vae_tiling"),
                             description="Decode the VAE in tiles (large frames on small GPUs).")
    model_registry_path: str = Field(default=setting_default("model_registry_path"),
                                     description="JSON file with extra model specs (optional).")
    asr_model: str = Field(default=setting_default("asr_model"),
                           description="Speech recognition for audio prompts: pocketsphinx, tiny-whisper or "
                           "whisper:<directory or Hugging Face id>.")
    voice_registry_path: str = Field(default=setting_default("voice_registry_path"),
                                     description="JSON file with extra narration voices for films (optional).")
    pipeline_cache_size: int = Field(default=setting_default("pipeline_cache_size"), ge=1,
                                     description="Loaded pipelines kept; loading another drops the least recently used.")

    serve_url: str | None = Field(default=setting_default("serve_url"),
                                  description="Ray Serve generation app (serving/); unset: generate in the run's process.")
    serve_timeout_s: float = Field(default=setting_default("serve_timeout_s"), gt=0,
                                   description="Longest silence of the generation stream before giving up.")

    @cached_property
    def _registry(self) -> ModelRegistry:
        return ModelRegistry.from_file(self.model_registry_path)

    @cached_property
    def _pipelines(self) -> PipelineCache:
        return PipelineCache(max_entries=self.pipeline_cache_size)

    def registry(self) -> ModelRegistry:
        return self._registry

    def transcriber(self):
        """The audio prompts' recognizer (loaded when it first transcribes)."""
        from videogen.asr import transcriber_for

        return transcriber_for(self.asr_model, model_cache=self.model_cache,
                               device="cuda" if self.device == "cuda" else "cpu")

    def voices(self) -> VoiceRegistry:
        return VoiceRegistry.from_file(self.voice_registry_path)

    def pipeline(self, model: str) -> Any:
        spec = self._registry.get(model)
        if spec is None:
            raise KeyError(f"model {model!r} is not registered")
        return self._pipelines.get(
            spec,
            model_cache=Path(self.model_cache),
            device=self.device,
            cpu_offload=self.cpu_offload,
            vae_tiling=self.vae_tiling,
        )


    def generator(self) -> Any:
        """The Serve client when ``serve_url`` is set (this process then never imports torch), else
        generation in this process through :meth:`pipeline`."""
        if self.serve_url:
            from videogen.generation.remote import RemoteGenerator

            return RemoteGenerator(self.serve_url, read_timeout_s=self.serve_timeout_s)
        from videogen.generation.in_process import InProcessGenerator

        return InProcessGenerator(self.pipeline)


def generation_from_env() -> GenerationResource:
    settings = load_settings()
    return GenerationResource(
        model_cache=str(settings.model_cache),
        device=settings.device,
        cpu_offload=settings.cpu_offload,
        vae_tiling=settings.vae_tiling,
        model_registry_path=settings.model_registry_path,
        voice_registry_path=settings.voice_registry_path,
        asr_model=settings.asr_model,
        pipeline_cache_size=settings.pipeline_cache_size,
        serve_url=settings.serve_url,
        serve_timeout_s=settings.serve_timeout_s,
    )
