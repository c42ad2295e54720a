"""Encode RGB frames to an MP4 file by piping raw pixels into ffmpeg.

The frames never touch the disk as images: ffmpeg reads ``rgb24`` rawvideo on stdin and we write the
array to that pipe in chunks. The ffmpeg command is built with ffmpeg-python in one place,
:func:`build_ffmpeg_args`, and :func:`encode_video` runs exactly that argument list, so a benchmark
that feeds the same raw bytes to ``ffmpeg`` with those arguments measures the same encode.

Odd sizes are rejected, not padded: ``yuv420p`` stores chroma at half resolution in both directions,
so width and height must be even, and silently growing a video by a pixel would make its size differ
from the request. Requests are validated upstream to multiples of 32, so an odd size here is a bug.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from videogen.encoding.presets import DEFAULT_CODEC, DEFAULT_PRESET, EncoderSettings, encoder_settings
from videogen.errors import VideogenError

# Bytes handed to the pipe per write: large enough that the number of system calls does not matter,
# small enough that a non-contiguous input is copied a piece at a time, never whole.
PIPE_CHUNK_BYTES = 4 * 1024 * 1024
# Only the end of ffmpeg's stderr is kept for the error message; the cause is always at the end.
STDERR_TAIL_BYTES = 8 * 1024
MAX_FPS = 1000


class EncodingError(VideogenError):
    """ffmpeg could not be started or exited with an error (its stderr is in the message)."""

    code = "encoding_failed"


@dataclass(frozen=True)
class EncodedVideo:
    path: Path
    settings: EncoderSettings
    width: int
    height: int
    num_frames: int
    fps: float
    size_bytes: int
    encode_seconds: float  # wall time of the ffmpeg run, pipe writes included
    ffmpeg_args: tuple[str, ...]  # as run, with a temporary output path (see encode_video)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def frame_rate(fps: float | int | Fraction) -> Fraction:
    """``fps`` as an exact fraction; 23.976... and 29.97... become the NTSC rates 24000/1001, 30000/1001."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise ValueError(f"fps must be a number of frames per second, got {fps!r}")
    if not math.isfinite(float(fps)) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be greater than 0 and at most {MAX_FPS}, got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:  # a tiny positive float can round down to 0
        raise ValueError(f"fps {fps!r} is too small to encode")
    return rate


def check_frames(frames: object) -> tuple[int, int, int]:
    """Return ``(num_frames, height, width)`` or raise a ValueError that says what is wrong."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"frames must be a numpy array of shape (num_frames, height, width, 3), got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must have shape (num_frames, height, width, 3) with RGB channels last, got shape {frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 RGB values in 0..255, got dtype {frames.dtype}; "
            "convert first, e.g. (frames.clip(0, 1) * 255).round().astype(np.uint8)"
        )
    num_frames, height, width, _ = frames.shape
    if num_frames == 0:
        raise ValueError("frames is empty: a video needs at least one frame")
    if height == 0 or width == 0:
        raise ValueError(f"frames have an empty picture ({width}x{height})")
    if width % 2 or height % 2:
        raise ValueError(
            f"frame size {width}x{height} has an odd dimension; yuv420p video needs even width and "
            "height (chroma is stored at half resolution)"
        )
    return num_frames, height, width


def build_ffmpeg_args(
    *,
    width: int,
    height: int,
    fps: float | int | Fraction,
    output_path: str | os.PathLike[str],
    preset: str = DEFAULT_PRESET,
    codec: str = DEFAULT_CODEC,
    ffmpeg_binary: str = "ffmpeg",
) -> list[str]:
    """The full argv (program first) that encodes rgb24 rawvideo from stdin to ``output_path``."""
    import ffmpeg  # ffmpeg-python; small, but only the encoding step needs it

    settings = encoder_settings(preset, codec)
    rate = frame_rate(fps)
    source = ffmpeg.input(
        "pipe:0",
        format="rawvideo",
        pix_fmt="rgb24",
        s=f"{width}x{height}",
        framerate=f"{rate.numerator}/{rate.denominator}",
    )
    # RGB -> YUV with the BT.709 matrix into limited ("tv") range, and the stream tagged to say so.
    # Left alone, swscale converts with BT.601 and writes no tags, and players guess (HD: BT.709),
    # which shifts colours.
    converted = source.filter("scale", out_color_matrix="bt709", out_range="tv").filter(
        "format", settings.pix_fmt
    )
    output_options: dict[str, str | int] = {
        "format": settings.container,
        "vcodec": settings.encoder,
        "pix_fmt": settings.pix_fmt,
        "crf": settings.crf,
        "preset": settings.speed_preset,
        "movflags": "+faststart",
        "color_primaries": "bt709",
        "color_trc": "bt709",
        "colorspace": "bt709",
        "color_range": "tv",
    }
    if settings.tag is not None:
        output_options["tag:v"] = settings.tag
    output_options.update(dict(settings.quiet_options))
    encode = ffmpeg.output(converted, str(output_path), **output_options)
    program, *arguments = encode.compile(cmd=ffmpeg_binary)
    # Global options first (ffmpeg-python would append them after the output file): errors only on
    # stderr, no progress lines, and overwrite the output.
    return [program, "-hide_banner", "-nostats", "-loglevel", "error", "-y", *arguments]


def encode_video(
    frames: np.ndarray,
    *,
    fps: float | int | Fraction,
    output_path: str | os.PathLike[str],
    preset: str = DEFAULT_PRESET,
    codec: str = DEFAULT_CODEC,
    ffmpeg_binary: str = "ffmpeg",
) -> EncodedVideo:
    """Encode ``frames`` (uint8, shape (num_frames, height, width, 3), RGB) to an MP4 file.

    ffmpeg writes to a temporary name next to ``output_path`` that is renamed on success, so a failed
    or interrupted encode never leaves a half-written video under the final name. The parent
    directory must exist.
    """
    num_frames, height, width = check_frames(frames)
    settings = encoder_settings(preset, codec)
    rate = frame_rate(fps)
    output_path = Path(output_path)
    if not output_path.parent.is_dir():
        raise ValueError(f"output directory {output_path.parent} does not exist")
    if output_path.is_dir():
        raise ValueError(f"output path {output_path} is a directory")
    partial_path = output_path.with_name(f".{output_path.name}.partial")
    args = build_ffmpeg_args(
        width=width,
        height=height,
        fps=rate,
        output_path=partial_path,
        preset=settings.preset,
        codec=settings.codec,
        ffmpeg_binary=ffmpeg_binary,
    )
    started = time.perf_counter()
    try:
        _run_ffmpeg(args, frames)
        os.replace(partial_path, output_path)
    finally:
        partial_path.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    return EncodedVideo(
        path=output_path,
        settings=settings,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=float(rate),
        size_bytes=output_path.stat().st_size,
        encode_seconds=elapsed,
        ffmpeg_args=tuple(args),
    )


def iter_frame_chunks(frames: np.ndarray, chunk_bytes: int = PIPE_CHUNK_BYTES):
    """Yield C-contiguous blocks of whole frames, about ``chunk_bytes`` each, without copying a
    contiguous input (a slice of a contiguous array along the first axis is contiguous)."""
    frame_bytes = int(np.prod(frames.shape[1:]))
    frames_per_chunk = max(1, chunk_bytes // max(1, frame_bytes))
    for start in range(0, frames.shape[0], frames_per_chunk):
        yield np.ascontiguousarray(frames[start : start + frames_per_chunk])


def run_ffmpeg_with_frames(args: list[str], frames: np.ndarray, *, cwd: str | os.PathLike[str] | None = None) -> None:
    """Run ffmpeg ``args`` (reading rgb24 rawvideo on ``pipe:0``) and write ``frames`` to it; raises
    EncodingError with the end of ffmpeg's stderr when it fails."""
    _run_ffmpeg(args, frames, cwd=cwd)


def _run_ffmpeg(args: list[str], frames: np.ndarray, *, cwd: str | os.PathLike[str] | None = None) -> None:
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd
        )
    except FileNotFoundError as exc:
        raise EncodingError(
            f"the ffmpeg program {args[0]!r} was not found; install ffmpeg (e.g. apt-get install ffmpeg)"
        ) from exc
    # Drain stderr on a thread: if ffmpeg filled the stderr pipe while we block writing stdin,
    # both processes would wait on each other forever.
    stderr_tail = bytearray()
    reader = threading.Thread(target=_drain, args=(process.stderr, stderr_tail), daemon=True)
    reader.start()
    broken_pipe = False
    try:
        for chunk in iter_frame_chunks(frames):
            process.stdin.write(chunk.data)
        process.stdin.close()
    except BrokenPipeError:
        broken_pipe = True  # ffmpeg exited early; its stderr says why
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        if not process.stdin.closed:
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
    returncode = process.wait()
    reader.join()
    if returncode != 0 or broken_pipe:
        stderr = stderr_tail.decode("utf-8", errors="replace").strip() or "(no output on stderr)"
        raise EncodingError(f"ffmpeg exited with status {returncode}: {stderr}")


def _drain(stream, tail: bytearray) -> None:
    for line in iter(lambda: stream.read(4096), b""):
        tail.extend(line)
        del tail[:-STDERR_TAIL_BYTES]
    stream.close()


@functools.lru_cache(maxsize=4)
def ffmpeg_version(ffmpeg_binary: str = "ffmpeg") -> str | None:
    """The first line of ``ffmpeg -version`` (e.g. "ffmpeg version 5.1.6-0+deb12u1"), for metadata."""
    try:
        completed = subprocess.run(
            [ffmpeg_binary, "-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = completed.stdout.splitlines()
    if completed.returncode != 0 or not lines:
        return None
    return lines[0].split(" Copyright")[0].strip()
