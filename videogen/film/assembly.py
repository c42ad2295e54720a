"""Assembly: scene clips → one picture track (cuts and crossfades) → one MP4 with sound, chapters and
optionally burned-in subtitles, through a single ffmpeg process fed by a pipe (as clips are).

Frame-exact by construction: scene ``i`` shows exactly ``shown_frames[i]`` frames; a crossfade blends
the ``fade`` extra frames generated at the end of a scene with the first frames of the next, so the
film lasts the sum of its scenes' durations. The soundtrack WAV is made to that length beforehand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videogen.encoding.encoder import check_frames, frame_rate, run_ffmpeg_with_frames
from videogen.encoding.presets import encoder_settings

AUDIO_BITRATE = "128k"
# Subtitles drawn into the picture scale with its height (libass sizes fonts for a 288-line canvas).
SUBTITLE_STYLE = "FontName=DejaVu Sans,FontSize=16,Outline=1,Shadow=0,MarginV=12"


@dataclass(frozen=True)
class SceneFrames:
    frames: np.ndarray  # (generated frames, H, W, 3) uint8
    shown: int  # frames the scene shows in the film
    fade_out: int  # extra frames after those, blended into the next scene (0 for a cut)


def compose(scenes: Sequence[SceneFrames]) -> np.ndarray:
    """The film's frames: each scene's ``shown`` frames, crossfades blended over the next scene's start."""
    total = sum(scene.shown for scene in scenes)
    first = scenes[0].frames
    film = np.empty((total, *first.shape[1:]), dtype=np.uint8)
    position = 0
    carry: np.ndarray | None = None  # the previous scene's fade frames, to blend in
    for scene in scenes:
        need = scene.shown + scene.fade_out
        if scene.frames.shape[0] < need:
            raise ValueError(f"a scene has {scene.frames.shape[0]} frames; it needs {need}")
        if scene.frames.shape[1:] != first.shape[1:]:
            raise ValueError(f"scenes differ in size: {scene.frames.shape[1:]} and {first.shape[1:]}")
        shown = scene.frames[: scene.shown].astype(np.float32)
        if carry is not None:
            n = min(len(carry), scene.shown)
            # The next scene's weight rises from 1/(n+1) to n/(n+1): neither picture is ever skipped.
            weight = (np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None]
            shown[:n] = carry[:n] * (1 - weight) + shown[:n] * weight
        film[position : position + scene.shown] = np.clip(np.rint(shown), 0, 255).astype(np.uint8)
        position += scene.shown
        carry = scene.frames[scene.shown : need].astype(np.float32) if scene.fade_out else None
    return film


@dataclass(frozen=True)
class Chapter:
    start_s: float
    end_s: float
    title: str


def _escape_metadata(text: str) -> str:
    text = " ".join(text.split())  # one line: a CR or LF in a prompt must not start a new entry
    for char in ("\\", "=", ";", "#"):
        text = text.replace(char, "\\" + char)
    return text


def ffmetadata(chapters: Sequence[Chapter]) -> str:
    """An FFMETADATA1 document with one chapter per scene (millisecond time base)."""
    lines = [";FFMETADATA1"]
    for chapter in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(chapter.start_s * 1000)}",
                  f"END={round(chapter.end_s * 1000)}", f"title={_escape_metadata(chapter.title)}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EncodedFilm:
    path: Path
    settings: dict
    num_frames: int
    fps: int


def encode_film(
    frames: np.ndarray, *, fps: int, output_path: str | os.PathLike[str], workdir: str | os.PathLike[str],
    chapters: Sequence[Chapter], audio: Path | None = None, burn_subtitles: Path | None = None,
    preset: str = "STANDARD", codec: str = "h264",
) -> EncodedFilm:
    """Encode the film: H.264 (or H.265) yuv420p +faststart, AAC audio when ``audio`` is given, one
    chapter per entry of ``chapters``, subtitles from the SRT ``burn_subtitles`` drawn in when given."""
    num_frames, height, width = check_frames(frames)
    settings = encoder_settings(preset, codec)
    rate = frame_rate(fps)
    workdir = Path(workdir)
    metadata = workdir / "chapters.ffmeta"
    metadata.write_text(ffmetadata(chapters), encoding="utf-8")
    output_path = Path(output_path)
    partial = output_path.with_name(f".{output_path.name}.partial.mp4")
    args = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
    if audio is not None:
        args += ["-i", str(audio)]
    args += ["-f", "ffmetadata", "-i", str(metadata)]
    metadata_input = 2 if audio is not None else 1
    video_filter = "scale=out_color_matrix=bt709:out_range=tv"
    if burn_subtitles is not None:
        # Relative to the working directory (ffmpeg runs there): a filter argument needs no escaping.
        video_filter = f"subtitles=filename={burn_subtitles.name}:force_style='{SUBTITLE_STYLE}'," + video_filter
    args += ["-vf", f"{video_filter},format={settings.pix_fmt}", "-map", "0:v:0"]
    if audio is not None:
        args += ["-map", "1:a:0", "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", "48000"]
    args += ["-map_metadata", str(metadata_input), "-map_chapters", str(metadata_input),
             "-c:v", settings.encoder, "-pix_fmt", settings.pix_fmt, "-crf", str(settings.crf),
             "-preset", settings.speed_preset, "-color_primaries", "bt709", "-color_trc", "bt709",
             "-colorspace", "bt709", "-color_range", "tv", "-movflags", "+faststart"]
    if settings.tag is not None:
        args += ["-tag:v", settings.tag]
    for option, value in settings.quiet_options:
        args += [f"-{option}", value]
    args += ["-f", "mp4", str(partial.resolve())]
    try:
        run_ffmpeg_with_frames(args, frames, cwd=workdir)
        os.replace(partial, output_path)
    finally:
        partial.unlink(missing_ok=True)
    return EncodedFilm(path=output_path, settings=settings.to_dict(), num_frames=num_frames, fps=fps)
