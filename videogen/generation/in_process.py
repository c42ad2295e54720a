"""Generation in the calling process (no Ray): the fallback when ``VIDEOGEN_SERVE_URL`` is unset.

Same interface as :class:`videogen.generation.remote.RemoteGenerator`; used by the tests of the
generation code, the benchmarks' baselines and people who run without Ray. It loads torch and
diffusers into the calling process, which is what the Serve path exists to avoid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from videogen.generation.generate import GeneratedVideo, GenerationParams


@dataclass(frozen=True)
class InProcessGenerator:
    # model name -> a loaded pipeline (e.g. a PipelineCache lookup)
    pipeline_for: Callable[[str], Any]

    def generate(
        self,
        model: str,
        params: GenerationParams,
        *,
        request_id: str = "",
        on_step: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> GeneratedVideo:
        from videogen.generation.generate import generate_frames

        return generate_frames(self.pipeline_for(model), params, on_step=on_step, should_cancel=should_cancel)
