"""The end-to-end baseline: a plain Python script with no orchestration at all.

It imports diffusers, loads the same model from the same cache, generates with the same parameters,
encodes with ffmpeg and writes the file: what someone would write without the platform.
Usage: python -m benchmarks.plain_script MODEL_DIR OUTPUT.mp4 WIDTH HEIGHT FRAMES FPS STEPS SEED
"""

import subprocess
import sys

import numpy as np
import torch
from diffusers import LTXPipeline


def main() -> None:
    model_dir, output, width, height, frames, fps, steps, seed = sys.argv[1:9]
    pipe = LTXPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    video = pipe(prompt="a red fox running in snow", width=int(width), height=int(height), num_frames=int(frames),
                 frame_rate=int(fps), num_inference_steps=int(steps), guidance_scale=3.0,
                 generator=torch.Generator("cpu").manual_seed(int(seed)), output_type="np").frames[0]
    raw = np.clip(np.rint(np.nan_to_num(video) * 255), 0, 255).astype(np.uint8)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                    "-r", fps, "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", output],
                   input=raw.tobytes(), check=True)


if __name__ == "__main__":
    main()
