"""Audio prompts: a spoken request, transcribed offline into the text prompt it is generated from.

A job may carry ``audio_prompt_key``, an object in the bucket (uploaded by the CLI's
``--audio-prompt FILE``). The run checks the file before anything else — a known container
(WAV, MP3, M4A, OGG), at most ``MAX_AUDIO_BYTES`` and ``MAX_AUDIO_S``, decodable, not silent — and
transcribes it offline (videogen.asr: PocketSphinx with the US English model its wheel ships by
default, a Whisper model by configuration). The transcript is stored on the job (``jobs.transcript``), becomes its prompt, and is then
validated like any typed prompt. Every problem is a ValidationError: the job is ``rejected`` with a
message that says what to fix.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videogen.asr import PocketSphinxTranscriber, Transcriber
from videogen.errors import ValidationError

MAX_AUDIO_BYTES = 10 * 1024 * 1024
MAX_AUDIO_S = 60.0
# ffprobe's format names of the accepted containers (M4A is ffprobe's "mov,mp4,m4a,3gp,3g2,mj2").
ACCEPTED_FORMATS = {"wav": "WAV", "mp3": "MP3", "mov,mp4,m4a,3gp,3g2,mj2": "M4A", "ogg": "OGG"}
# Quieter than this everywhere (peak, dBFS) is silence: nothing to transcribe.
SILENCE_PEAK_DBFS = -50.0
SAMPLE_RATE = 16_000  # what the recognizers' models were trained on
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Transcript:
    text: str
    duration_s: float
    format: str


def _reject(message: str, code: str) -> ValidationError:
    return ValidationError(message, code=code, field="audio_prompt")


def check_and_decode(path: Path) -> tuple[np.ndarray, float, str]:
    """16 kHz mono int16 samples, the duration and the container's name; or a ValidationError."""
    size = path.stat().st_size
    if size == 0:
        raise _reject("the audio prompt is empty", "audio_undecodable")
    if size > MAX_AUDIO_BYTES:
        raise _reject(f"the audio prompt is {size / 1024 / 1024:.1f} MiB; the maximum is "
                      f"{MAX_AUDIO_BYTES // 1024 // 1024} MiB", "audio_too_large")
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration:stream=codec_type",
                            "-of", "json", str(path)], capture_output=True, timeout=TIMEOUT_S, check=False)
    facts = json.loads(probe.stdout or b"{}") if probe.returncode == 0 else {}
    container = facts.get("format", {}).get("format_name")
    if container not in ACCEPTED_FORMATS or not any(s.get("codec_type") == "audio" for s in facts.get("streams", [])):
        raise _reject("the audio prompt cannot be decoded as WAV, MP3, M4A or OGG audio", "audio_undecodable")
    duration = float(facts["format"].get("duration") or 0)
    if duration > MAX_AUDIO_S:
        raise _reject(f"the audio prompt lasts {duration:.1f} s; the maximum is {MAX_AUDIO_S:g} s", "audio_too_long")
    # Decoded up to just past the limit: a container may state a false duration, the samples cannot.
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-t", f"{MAX_AUDIO_S + 1:g}", "-ac", "1",
                              "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"],
                             capture_output=True, timeout=TIMEOUT_S, check=False)
    samples = np.frombuffer(decoded.stdout, dtype="<i2")
    if decoded.returncode != 0 or samples.size == 0:
        raise _reject("the audio prompt cannot be decoded as WAV, MP3, M4A or OGG audio", "audio_undecodable")
    if samples.size / SAMPLE_RATE > MAX_AUDIO_S:
        raise _reject(f"the audio prompt lasts more than {MAX_AUDIO_S:g} s; the maximum is {MAX_AUDIO_S:g} s",
                      "audio_too_long")
    peak = int(np.abs(samples.astype(np.int32)).max())
    if peak == 0 or 20 * np.log10(peak / 32768) < SILENCE_PEAK_DBFS:
        raise _reject("the audio prompt is silent; record the prompt again, closer to the microphone", "audio_silent")
    return samples, samples.size / SAMPLE_RATE, ACCEPTED_FORMATS[container]


def transcribe_prompt(storage, key: str, transcriber: Transcriber | None = None) -> Transcript:
    """The transcript of the audio prompt stored under ``key`` (PocketSphinx unless another engine of
    videogen.asr is given); a ValidationError says what is wrong."""
    if not storage.exists(key):
        raise _reject(f"no audio prompt {key!r} in the bucket; upload it first", "audio_not_found")
    with tempfile.TemporaryDirectory(prefix="videogen-audio-prompt-") as workdir:
        path = Path(workdir) / "prompt"
        path.write_bytes(storage.read_bytes(key))
        samples, duration, container = check_and_decode(path)
    text = (transcriber or PocketSphinxTranscriber()).transcribe(samples)
    if not text:
        raise _reject("no speech was recognized in the audio prompt; speak the prompt clearly, in English",
                      "audio_no_speech")
    return Transcript(text=text, duration_s=duration, format=container)
