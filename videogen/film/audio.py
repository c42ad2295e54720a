"""A film's soundtrack: narration placed at its scenes, a music bed ducked under it, loudness-normalized.

1. The voice track: each scene's synthesized speech decoded to 48 kHz mono and placed at the scene's
   start (:func:`voice_track`); speech never overlaps the next scene (scenes stretch to their narration).
2. The music bed: the user's file from the bucket, looped or cut to the film's length with a fade-out,
   or a built-in generated bed (a soft A-minor chord that breathes), :func:`music_bed`.
3. The mix (:func:`mix`): the music is compressed by the voice through ffmpeg's ``sidechaincompress``
   (ducking: it drops by up to ~15 dB while someone speaks), added to the voice, then normalized to
   the target integrated loudness (EBU R128, default -16 LUFS) by ffmpeg's ``loudnorm`` in two passes
   (measure, then a linear gain with a -1.5 dBTP true-peak ceiling).
"""

from __future__ import annotations

import json
import re
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videogen.errors import ValidationError, VideogenError

SAMPLE_RATE = 48_000
TRUE_PEAK_DBTP = -1.5
MUSIC_GAIN_DB = -8.0  # the bed sits under the voice even before ducking
FADE_OUT_S = 1.0
MUSIC_CHECK_S = 180.0  # the longest film (videogen.film.storyboard.MAX_FILM_S): no more of a bed is used
TIMEOUT_S = 600.0


class AudioError(VideogenError):
    code = "audio_failed"


def _ffmpeg(args: Sequence[str], *, what: str) -> subprocess.CompletedProcess:
    try:
        completed = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", *args], capture_output=True,
                                   timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise AudioError("the ffmpeg program was not found; install ffmpeg") from None
    if completed.returncode != 0:
        tail = completed.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise AudioError(f"{what} failed: {' '.join(tail) or 'exit status ' + str(completed.returncode)}")
    return completed


def decode_mono(path: str | Path, *, max_s: float | None = None) -> np.ndarray:
    """Any audio file as float32 mono samples at SAMPLE_RATE (at most ``max_s`` seconds of it)."""
    limit = ["-t", f"{max_s:g}"] if max_s is not None else []
    completed = _ffmpeg(["-v", "error", "-i", str(path), *limit, "-ac", "1", "-ar", str(SAMPLE_RATE),
                         "-f", "f32le", "-"], what=f"decoding {Path(path).name}")
    return np.frombuffer(completed.stdout, dtype=np.float32)


def write_wav(samples: np.ndarray, path: str | Path) -> Path:
    """float samples in [-1, 1] (mono) as 16-bit PCM WAV at SAMPLE_RATE."""
    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


@dataclass(frozen=True)
class PlacedSpeech:
    start_s: float
    path: Path


def voice_track(speeches: Sequence[PlacedSpeech], duration_s: float, output: str | Path) -> Path:
    track = np.zeros(round(duration_s * SAMPLE_RATE), dtype=np.float32)
    for speech in speeches:
        samples = decode_mono(speech.path)
        start = round(speech.start_s * SAMPLE_RATE)
        end = min(len(track), start + len(samples))
        track[start:end] += samples[: end - start]
    return write_wav(track, output)


def music_bed(duration_s: float, output: str | Path, *, source: str | Path | None = None) -> Path:
    """The user's file (looped or cut to ``duration_s``) or, without one, the built-in generated bed."""
    fade = f"afade=t=out:st={max(0.0, duration_s - FADE_OUT_S):.3f}:d={min(FADE_OUT_S, duration_s):.3f}"
    if source is None:
        # A-minor triad (A3, C4, E4) with a slow swell, low-passed: a neutral pad under speech.
        expression = ("(0.30*sin(2*PI*220*t)+0.22*sin(2*PI*261.63*t)+0.22*sin(2*PI*329.63*t))"
                      "*(0.75+0.25*sin(2*PI*0.2*t))")
        inputs = ["-f", "lavfi", "-i", f"aevalsrc='{expression}':s={SAMPLE_RATE}:d={duration_s:.3f}"]
        filters = f"lowpass=f=2000,{fade}"
    else:
        inputs = ["-stream_loop", "-1", "-i", str(source)]
        filters = f"atrim=0:{duration_s:.3f},{fade}"
    _ffmpeg(["-v", "error", "-y", *inputs, "-t", f"{duration_s:.3f}", "-af", filters, "-ac", "1",
             "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", str(output)], what="making the music bed")
    return Path(output)


def check_music_file(path: str | Path, *, key: str, max_s: float = MUSIC_CHECK_S) -> float:
    """A user's music file must decode to some audio (else the film is rejected, not retried); returns
    the seconds decoded. Only the first ``max_s`` seconds are decoded: a bed longer than any film is cut."""
    try:
        samples = decode_mono(path, max_s=max_s)
    except AudioError as exc:
        raise ValidationError(f"storyboard.music.key: {key!r} is not an audio file ffmpeg can decode ({exc.message})",
                              code="invalid_music", field="storyboard.music.key") from None
    if samples.size == 0:
        raise ValidationError(f"storyboard.music.key: {key!r} holds no audio", code="invalid_music",
                              field="storyboard.music.key")
    return samples.size / SAMPLE_RATE


@dataclass(frozen=True)
class Mix:
    path: Path
    measured_lufs: float  # before normalization
    output_lufs: float  # what loudnorm's second pass reports it wrote


_JSON_BLOCK = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.S)


def mix(voice: Path | None, music: Path | None, duration_s: float, output: str | Path, *,
        target_lufs: float = -16.0) -> Mix:
    """Duck ``music`` under ``voice``, add them, and normalize to ``target_lufs`` (either may be None)."""
    if voice is None and music is None:
        raise ValueError("a mix needs a voice track, a music bed, or both")
    output = Path(output)
    premix = output.with_name(f".{output.stem}.premix.wav")
    stereo = f"aformat=sample_rates={SAMPLE_RATE}:channel_layouts=stereo"
    if voice is not None and music is not None:
        inputs = ["-i", str(voice), "-i", str(music)]
        graph = (f"[0:a]{stereo},asplit=2[voice][key];[1:a]{stereo},volume={MUSIC_GAIN_DB}dB[bed];"
                 "[bed][key]sidechaincompress=threshold=0.02:ratio=8:attack=20:release=400[ducked];"
                 f"[ducked][voice]amix=inputs=2:normalize=0:duration=longest,atrim=0:{duration_s:.3f}[out]")
    else:
        inputs = ["-i", str(voice if voice is not None else music)]
        graph = f"[0:a]{stereo},atrim=0:{duration_s:.3f}[out]"
    _ffmpeg(["-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_s16le",
             str(premix)], what="mixing the soundtrack")
    try:
        loudnorm = f"loudnorm=I={target_lufs:g}:TP={TRUE_PEAK_DBTP:g}:LRA=11"
        first = _loudnorm_report(_ffmpeg(["-v", "info", "-i", str(premix), "-af", f"{loudnorm}:print_format=json",
                                          "-f", "null", "-"], what="measuring loudness"))
        second_filter = (f"{loudnorm}:measured_I={first['input_i']}:measured_TP={first['input_tp']}"
                         f":measured_LRA={first['input_lra']}:measured_thresh={first['input_thresh']}"
                         f":offset={first['target_offset']}:linear=true:print_format=json")
        second = _loudnorm_report(_ffmpeg(["-v", "info", "-y", "-i", str(premix), "-af", second_filter,
                                           "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", str(output)],
                                          what="normalizing loudness"))
    finally:
        premix.unlink(missing_ok=True)
    return Mix(path=output, measured_lufs=float(first["input_i"]), output_lufs=float(second["output_i"]))


def _loudnorm_report(completed: subprocess.CompletedProcess) -> dict[str, str]:
    match = _JSON_BLOCK.search(completed.stderr.decode("utf-8", "replace"))
    if match is None:
        raise AudioError("ffmpeg's loudnorm printed no measurement")
    report = json.loads(match.group(0))
    if report.get("input_i") in ("-inf", "inf"):
        raise AudioError("the soundtrack is silent: its loudness cannot be measured")
    return report
