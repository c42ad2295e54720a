"""The serving benchmark's baseline: a plain warm Python loop, no orchestration, no service.

It loads the model once (the same loader and model cache as the Serve replica), makes one warm-up
call (the first call pays lazy initialisation), then generates, encodes and writes N videos in a row
with the library's own functions (``videogen.generation.generate.generate_frames``,
``videogen.encoding.encoder.encode_video``). Prints one JSON line: load and warm-up seconds, each
iteration's generate and encode seconds, and the loop's total.

Usage: python -m benchmarks.warm_loop OUT_DIR N WIDTH HEIGHT FRAMES FPS STEPS [MODEL]
"""

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from videogen.config import load_settings
from videogen.encoding.encoder import encode_video
from videogen.generation.generate import GenerationParams, generate_frames
from videogen.generation.loader import load_pipeline
from videogen.generation.registry import ModelRegistry


def main() -> None:
    out_dir, n, width, height, frames, fps, steps = sys.argv[1:8]
    model = sys.argv[8] if len(sys.argv) > 8 else "tiny"
    settings = load_settings()
    spec = ModelRegistry.from_file(settings.model_registry_path).get(model)
    if spec is None:
        raise SystemExit(f"model {model!r} is not registered")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    pipe = load_pipeline(spec, model_cache=settings.model_cache, device=settings.device,
                         cpu_offload=settings.cpu_offload, vae_tiling=settings.vae_tiling)
    load_s = time.perf_counter() - started
    params = GenerationParams(prompt="a red fox running in snow", negative_prompt="", width=int(width),
                              height=int(height), num_frames=int(frames), fps=int(fps), steps=int(steps),
                              guidance_scale=spec.defaults.guidance_scale, seed=5)
    started = time.perf_counter()
    generate_frames(pipe, params)
    warmup_s = time.perf_counter() - started

    iterations = []
    cpu_before = os.times()
    loop_started = time.perf_counter()
    for i in range(int(n)):
        t0 = time.perf_counter()
        video = generate_frames(pipe, replace(params, seed=1000 + i))
        t1 = time.perf_counter()
        encode_video(video.frames, fps=params.fps, output_path=out / f"video-{i}.mp4")
        t2 = time.perf_counter()
        iterations.append({"generate_s": t1 - t0, "encode_s": t2 - t1, "total_s": t2 - t0})
    loop_s = time.perf_counter() - loop_started
    # CPU of this process and of the encoders it ran and reaped, over the loop.
    cpu_s = sum(os.times()[:4]) - sum(cpu_before[:4])
    print(json.dumps({"load_s": load_s, "warmup_s": warmup_s, "loop_s": loop_s, "cpu_s": cpu_s,
                      "iterations": iterations}))


if __name__ == "__main__":
    main()
