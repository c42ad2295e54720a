"""Read back what an encoded file really is, with ffprobe.

Used to check an encode (tests, the pipeline's sanity check) rather than trusting what we asked
ffmpeg for. The frame count is exact: ``-count_frames`` decodes the stream and counts, instead of
reading the container's declared ``nb_frames``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from videogen.errors import VideogenError


class ProbeError(VideogenError):
    """ffprobe could not read the file, or it holds no video stream."""

    code = "probe_failed"


@dataclass(frozen=True)
class VideoFacts:
    codec: str  # ffprobe's codec_name: "h264", "hevc"
    codec_tag: str  # MP4 sample entry: "avc1", "hvc1", "hev1"
    width: int
    height: int
    frame_count: int  # decoded frames, counted
    fps: float  # from r_frame_rate
    duration_s: float
    pix_fmt: str
    size_bytes: int
    format_name: str  # ffprobe's container list, e.g. "mov,mp4,m4a,3gp,3g2,mj2"


def _rate(text: str) -> float:
    """``"24000/1001"`` -> 23.976...; ``"0/0"`` (unknown) -> 0.0."""
    numerator, _, denominator = text.partition("/")
    if not denominator:
        return float(numerator)
    if int(denominator) == 0:
        return 0.0
    return float(Fraction(int(numerator), int(denominator)))


def probe_video(
    path: str | os.PathLike[str], *, ffprobe_binary: str = "ffprobe", timeout_s: float = 120.0
) -> VideoFacts:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    args = [
        ffprobe_binary,
        "-v", "error",
        "-count_frames",
        "-select_streams", "v:0",
        "-show_entries",
        "stream=codec_name,codec_tag_string,width,height,pix_fmt,r_frame_rate,nb_read_frames,duration"
        ":format=duration,size,format_name",
        "-of", "json",
        str(path),
    ]  # fmt: skip
    try:
        completed = subprocess.run(args, capture_output=True, check=False, timeout=timeout_s)
    except FileNotFoundError as exc:
        raise ProbeError(
            f"the ffprobe program {ffprobe_binary!r} was not found; install ffmpeg (it ships ffprobe)"
        ) from exc
    except subprocess.TimeoutExpired as exc:  # counting frames decodes the whole stream
        raise ProbeError(f"ffprobe did not finish reading {path} within {timeout_s} s") from exc
    if completed.returncode != 0:
        stderr = completed.stderr.decode("utf-8", errors="replace").strip()
        raise ProbeError(f"ffprobe could not read {path}: {stderr or f'exit status {completed.returncode}'}")
    report = json.loads(completed.stdout)
    streams = report.get("streams") or []
    if not streams:
        raise ProbeError(f"{path} holds no video stream")
    stream, container = streams[0], report.get("format", {})
    # The stream's own duration is frames/fps exactly; the container's may include edit lists.
    duration = stream.get("duration") or container.get("duration") or 0
    return VideoFacts(
        codec=stream["codec_name"],
        codec_tag=stream.get("codec_tag_string", ""),
        width=int(stream["width"]),
        height=int(stream["height"]),
        frame_count=int(stream.get("nb_read_frames", 0)),
        fps=_rate(stream.get("r_frame_rate", "0/0")),
        duration_s=float(duration),
        pix_fmt=stream.get("pix_fmt", ""),
        size_bytes=int(container.get("size") or path.stat().st_size),
        format_name=container.get("format_name", ""),
    )
