"""Run one text-to-video generation on a loaded diffusers pipeline.

Deliberately thin: one pipeline call with ``output_type="np"``, then a single float -> uint8
conversion. The benchmark holds :func:`generate_frames` to within 5 % of a bare diffusers call, so
nothing here copies frames or does work per step beyond the two optional callbacks.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from videogen.errors import JobCanceledError, OutOfMemoryError, VideogenError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class GenerationParams:
    """What one generation needs; already validated against the model's limits by the caller."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float
    seed: int


@dataclass(frozen=True)
class GeneratedVideo:
    # uint8 RGB, shape (num_frames, height, width, 3), C-contiguous: ready to pipe to ffmpeg.
    frames: np.ndarray
    # Wall-clock seconds of the pipeline call (text encoding, denoising, VAE decode): jobs.gpu_seconds.
    seconds: float


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] to uint8, rounding to nearest; NaN becomes 0, out-of-range values are clipped
    (+inf to 255, -inf to 0).

    Works in place on ``frames`` (the pipeline's own output buffer) so that the only new array is the
    uint8 result. diffusers' ``export_to_video`` truncates instead of rounding, hence this function.
    """
    import numpy as np

    np.nan_to_num(frames, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.multiply(frames, 255.0, out=frames)
    np.rint(frames, out=frames)
    np.clip(frames, 0.0, 255.0, out=frames)
    return frames.astype(np.uint8, order="C")


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def generate_frames(
    pipe: Any,
    params: GenerationParams,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> GeneratedVideo:
    """Generate ``params.num_frames`` frames of ``params.height`` x ``params.width`` with ``pipe``.

    ``on_step(done, total)`` is called after each denoising step with ``done`` = 1..total.
    ``should_cancel()`` is polled before the call and after each step; when it returns True the
    generation stops and :class:`JobCanceledError` is raised. CUDA out-of-memory errors are raised as
    :class:`videogen.errors.OutOfMemoryError` (transient: the job is retried).

    The same ``params`` (seed included) on the same pipeline and device give byte-identical frames:
    the initial noise comes from a CPU ``torch.Generator`` seeded with ``params.seed``.
    """
    import torch

    if should_cancel is not None and should_cancel():
        raise JobCanceledError("generation canceled before it started")

    def report_step(pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step_index + 1, pipeline.num_timesteps)
        if should_cancel is not None and should_cancel():
            raise JobCanceledError(f"generation canceled after step {step_index + 1} of {pipeline.num_timesteps}")
        return callback_kwargs

    wants_callback = on_step is not None or should_cancel is not None
    started = time.perf_counter()
    try:
        output = pipe(
            prompt=params.prompt,
            negative_prompt=params.negative_prompt,
            width=params.width,
            height=params.height,
            num_frames=params.num_frames,
            frame_rate=params.fps,
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            # CPU generator: the same seed gives the same noise whatever the device.
            generator=torch.Generator("cpu").manual_seed(params.seed),
            output_type="np",
            callback_on_step_end=report_step if wants_callback else None,
            callback_on_step_end_tensor_inputs=[],  # the callback reads no tensors
        )
    except BaseException as error:
        # The pipeline's own cleanup (re-arming CPU-offload hooks, resetting caches) only runs when it
        # returns normally; redo it so that a cached pipeline stays usable for the next job.
        free_model_hooks = getattr(pipe, "maybe_free_model_hooks", None)
        if free_model_hooks is not None:
            free_model_hooks()
        if _is_out_of_memory(error):
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
            raise OutOfMemoryError(
                f"out of memory generating {params.num_frames} frames of {params.width}x{params.height}: {error}"
            ) from error
        raise
    seconds = time.perf_counter() - started

    frames = output.frames[0]  # (num_frames, height, width, 3) float32 in [0, 1]; batch of one
    expected_shape = (params.num_frames, params.height, params.width, 3)
    if frames.shape != expected_shape:
        raise VideogenError(f"pipeline returned frames of shape {frames.shape}, expected {expected_shape}")
    return GeneratedVideo(frames=frames_to_uint8(frames), seconds=seconds)
