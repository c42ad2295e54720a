"""Voice registry and offline text-to-speech for films' narration.

A voice name maps to an engine and that engine's voice, like the model registry maps a model name to
its loading recipe. Built in: Debian's ``flite`` (CMU voices, intelligible enough that an offline
recognizer reads them back; the default ``slt``) and ``espeak-ng`` (many languages). Production
voices come from the JSON file named by ``VIDEOGEN_VOICE_REGISTRY`` (a list of objects with the fields
of :class:`VoiceSpec`); the ``command`` engine runs any offline TTS program, e.g. a neural Piper
voice::

    [{"name": "amy", "engine": "command", "description": "Piper en_US amy (neural)", "language": "en-US",
      "command": ["piper", "--model", "/models/en_US-amy-medium.onnx", "--output_file", "{output}"]}]

The text always reaches the engine through a file or stdin, never as an argument (a narration that
starts with "-" is text, not an option).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from videogen.errors import VideogenError

DEFAULT_VOICE = "slt"
TIMEOUT_S = 120.0


class SpeechSynthesisError(VideogenError):
    """The TTS engine could not be run or produced no audio."""

    code = "tts_failed"


@dataclass(frozen=True)
class VoiceSpec:
    name: str
    engine: str  # "flite", "espeak-ng" or "command"
    voice: str = ""  # the engine's voice name (flite -voice, espeak-ng -v)
    description: str = ""
    words_per_minute: int | None = None  # espeak-ng's -s
    # engine "command": argv; "{output}" is replaced by the WAV path, the text arrives on stdin.
    command: Sequence[str] = field(default_factory=tuple)
    language: str = ""  # BCP 47 tag of what it speaks ("en-US"): the subtitles' language in the player

    def argv(self, text_file: Path, output: Path) -> list[str]:
        if self.engine == "flite":
            return ["flite", "-voice", self.voice, "-f", str(text_file), "-o", str(output)]
        if self.engine == "espeak-ng":
            rate = ["-s", str(self.words_per_minute)] if self.words_per_minute else []
            return ["espeak-ng", "-v", self.voice, *rate, "-f", str(text_file), "-w", str(output)]
        if self.engine == "command":
            return [part.replace("{output}", str(output)) for part in self.command]
        raise SpeechSynthesisError(f"voice {self.name!r} has an unknown engine {self.engine!r}")


BUILTIN_VOICES: dict[str, VoiceSpec] = {
    spec.name: spec
    for spec in (
        VoiceSpec("slt", "flite", "slt", "US English, female (flite, CMU SLT)", language="en-US"),
        VoiceSpec("rms", "flite", "rms", "US English, male (flite, CMU RMS)", language="en-US"),
        VoiceSpec("awb", "flite", "awb", "Scottish English, male (flite, CMU AWB)", language="en-GB"),
        VoiceSpec("en-us", "espeak-ng", "en-us", "US English (espeak-ng)", words_per_minute=150, language="en-US"),
        VoiceSpec("fr", "espeak-ng", "fr", "French (espeak-ng)", words_per_minute=150, language="fr"),
        VoiceSpec("de", "espeak-ng", "de", "German (espeak-ng)", words_per_minute=150, language="de"),
        VoiceSpec("es", "espeak-ng", "es", "Spanish (espeak-ng)", words_per_minute=150, language="es"),
    )
}


class VoiceRegistry:
    default_name = DEFAULT_VOICE

    def __init__(self, specs: Mapping[str, VoiceSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None) -> "VoiceRegistry":
        specs = dict(BUILTIN_VOICES)
        if path:
            for raw in json.loads(Path(path).read_text()):
                spec = VoiceSpec(**{**raw, "command": tuple(raw.get("command", ()))})
                specs[spec.name] = spec
        return cls(specs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "VoiceRegistry":
        from videogen.config import load_settings

        return cls.from_file(load_settings(env).voice_registry_path)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> VoiceSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs


@dataclass(frozen=True)
class Speech:
    path: Path
    duration_s: float
    sample_rate: int


def synthesize(text: str, voice: VoiceSpec, output: str | os.PathLike[str]) -> Speech:
    """Speak ``text`` with ``voice`` into the WAV file ``output``."""
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="videogen-tts-") as workdir:
        text_file = Path(workdir) / "narration.txt"
        text_file.write_text(text, encoding="utf-8")
        args = voice.argv(text_file, output)
        try:
            completed = subprocess.run(args, input=text.encode("utf-8") if voice.engine == "command" else None,
                                       capture_output=True, timeout=TIMEOUT_S, check=False)
        except FileNotFoundError:
            raise SpeechSynthesisError(f"the text-to-speech program {args[0]!r} of voice {voice.name!r} was not "
                                       "found; install it (Debian: apt-get install flite espeak-ng)") from None
        except subprocess.TimeoutExpired:
            raise SpeechSynthesisError(f"voice {voice.name!r} did not finish within {TIMEOUT_S:g} s") from None
    if completed.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        stderr = completed.stderr.decode("utf-8", "replace").strip()[-500:]
        raise SpeechSynthesisError(f"voice {voice.name!r} ({voice.engine}) failed with exit status "
                                   f"{completed.returncode}: {stderr or 'no audio written'}")
    try:
        with wave.open(str(output), "rb") as audio:
            rate, frames = audio.getframerate(), audio.getnframes()
    except (wave.Error, EOFError) as exc:
        raise SpeechSynthesisError(f"voice {voice.name!r} wrote something that is not a WAV file: {exc}") from None
    if frames == 0:
        raise SpeechSynthesisError(f"voice {voice.name!r} produced no audio for the narration")
    return Speech(path=output, duration_s=frames / rate, sample_rate=rate)
