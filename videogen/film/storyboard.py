"""Storyboards: a film request as an ordered list of scenes, validated as strictly as a clip.

A storyboard is JSON (the ``jobs.storyboard`` column, ``videogen submit --storyboard FILE``, the API's
``storyboard`` field)::

    {"scenes": [{"prompt": "a red fox wakes in its den", "duration_s": 3,
                 "narration": "At dawn, the fox wakes.", "transition": "crossfade"},
                {"prompt": "the fox runs across fresh snow", "duration_s": 4}],
     "voice": "slt", "music": "generated", "subtitles": "burned"}

* ``scenes``: 1 to ``MAX_SCENES``; each a visual ``prompt`` (checked like a clip's), a ``duration_s``
  (``MIN_SCENE_S`` to ``MAX_SCENE_S``), optional ``narration`` (at most ``MAX_NARRATION_CHARS``) and a
  ``transition`` to the next scene: ``cut`` (default) or ``crossfade`` (``CROSSFADE_S``, taken from
  extra frames generated at the end of the scene, so the film keeps the sum of the durations).
* ``voice``: a name of the voice registry (videogen.film.voices); ``music``: ``none`` (default),
  ``generated`` (a built-in bed) or ``{"key": "<object key in the bucket>"}`` (a WAV/MP3/M4A/OGG the
  user uploaded); ``subtitles``: ``none`` (default), ``sidecar`` (SRT + WebVTT next to the video) or
  ``burned`` (drawn into the picture; the sidecar files are stored too).
* Everything else (model, size, fps, steps, guidance, seed, preset, negative prompt) is the job's own
  parameters, validated as for a clip: they are every scene's defaults.

Each scene is generated as a clip of its own with a seed derived from the film's seed and its index
(:func:`scene_seed`), at the model's frame rule, and trimmed to its exact number of frames when the
film is assembled. A scene whose narration is longer than its duration is stretched to the narration
(:func:`videogen.film.plan.plan_film`): speech is never sped up.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from videogen.errors import ValidationError
from videogen.storage.base import validate_key
from videogen.validation import _check_text, _parse_float, show_number

MAX_SCENES = 24
MIN_SCENE_S = 0.5
MAX_SCENE_S = 20.0
MAX_FILM_S = 180.0
MAX_NARRATION_CHARS = 600
CROSSFADE_S = 0.5
TRANSITIONS = ("cut", "crossfade")
SUBTITLE_MODES = ("none", "sidecar", "burned")
MUSIC_CHOICES = ("none", "generated")
# A storyboard is a small document; anything bigger is a mistake (or an attack on the parser).
MAX_STORYBOARD_BYTES = 64 * 1024

Transition = Literal["cut", "crossfade"]
SubtitleMode = Literal["none", "sidecar", "burned"]


@dataclass(frozen=True)
class Scene:
    index: int  # 0-based position in the film
    prompt: str
    duration_s: float
    narration: str = ""
    transition: Transition = "cut"


@dataclass(frozen=True)
class Storyboard:
    scenes: tuple[Scene, ...]
    voice: str
    music: str | None  # None (no music), "generated", or the object key of the user's file
    music_generated: bool
    subtitles: SubtitleMode

    @property
    def duration_s(self) -> float:
        return sum(scene.duration_s for scene in self.scenes)

    @property
    def narrated(self) -> bool:
        return any(scene.narration.strip() for scene in self.scenes)

    @property
    def has_audio(self) -> bool:
        return self.narrated or self.music is not None

    def to_dict(self) -> dict[str, Any]:
        """The normalized storyboard (what metadata.json and the API show)."""
        music: Any = "none" if self.music is None else ("generated" if self.music_generated else {"key": self.music})
        return {"scenes": [{k: v for k, v in asdict(scene).items() if k != "index"} for scene in self.scenes],
                "voice": self.voice, "music": music, "subtitles": self.subtitles}


def _field(path: str) -> str:
    return f"storyboard.{path}"


def _fail(path: str, message: str, code: str) -> ValidationError:
    return ValidationError(f"{_field(path)}: {message}", code=code, field=_field(path))


def parse_storyboard(raw: Any) -> dict[str, Any]:
    """``raw`` (a JSON text, bytes, or an already decoded object) as a dict, or a ValidationError."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("storyboard is not valid UTF-8", code="invalid_storyboard", field="storyboard") from None
    if isinstance(raw, str):
        if len(raw.encode("utf-8")) > MAX_STORYBOARD_BYTES:
            raise ValidationError(f"storyboard is larger than {MAX_STORYBOARD_BYTES // 1024} KiB",
                                  code="invalid_storyboard", field="storyboard")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"storyboard is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                  code="invalid_storyboard", field="storyboard") from None
    if not isinstance(raw, dict):
        raise ValidationError("storyboard must be a JSON object with a list of scenes, e.g. "
                              '{"scenes": [{"prompt": "a fox", "duration_s": 3}]}',
                              code="invalid_storyboard", field="storyboard")
    if len(json.dumps(raw, ensure_ascii=False).encode("utf-8")) > MAX_STORYBOARD_BYTES:
        raise ValidationError(f"storyboard is larger than {MAX_STORYBOARD_BYTES // 1024} KiB",
                              code="invalid_storyboard", field="storyboard")
    return raw


SCENE_FIELDS = {"prompt", "duration_s", "narration", "transition"}
STORYBOARD_FIELDS = {"scenes", "voice", "music", "subtitles", "title"}


def validate_storyboard(raw: Any, *, voices: Any) -> Storyboard:
    """Validate a storyboard; ``voices`` is the voice registry (its ``names()`` and ``__contains__``)."""
    document = parse_storyboard(raw)
    unknown = sorted(set(document) - STORYBOARD_FIELDS)
    if unknown:
        raise ValidationError(f"storyboard has unknown fields: {', '.join(unknown)}; allowed: "
                              f"{', '.join(sorted(STORYBOARD_FIELDS))}", code="invalid_storyboard", field="storyboard")
    scenes_raw = document.get("scenes")
    if not isinstance(scenes_raw, list):
        raise _fail("scenes", "must be a list of scenes", "invalid_storyboard")
    if not scenes_raw:
        raise _fail("scenes", "is empty; a film needs at least one scene", "storyboard_no_scenes")
    if len(scenes_raw) > MAX_SCENES:
        raise _fail("scenes", f"has {len(scenes_raw)} scenes; the maximum is {MAX_SCENES}", "storyboard_too_many_scenes")
    scenes = tuple(_scene(index, raw_scene) for index, raw_scene in enumerate(scenes_raw))
    total = sum(scene.duration_s for scene in scenes)
    if total > MAX_FILM_S:
        raise _fail("scenes", f"last {show_number(round(total, 3))} s in all; a film may last at most "
                    f"{show_number(MAX_FILM_S)} s", "storyboard_too_long")

    voice = document.get("voice") or voices.default_name
    if not isinstance(voice, str) or voice not in voices:
        shown = voice if isinstance(voice, str) and len(voice) <= 60 else str(voice)[:60]
        raise _fail("voice", f"{shown!r} is not a known voice; available: {', '.join(voices.names())}", "unknown_voice")

    music_raw = document.get("music", "none")
    music: str | None
    if music_raw is None or music_raw == "none":
        music, generated = None, False
    elif music_raw == "generated":
        music, generated = "generated", True
    elif isinstance(music_raw, dict) and set(music_raw) == {"key"} and isinstance(music_raw["key"], str):
        try:
            music = validate_key(music_raw["key"])
        except ValueError as exc:
            raise _fail("music.key", str(exc), "invalid_music") from None
        generated = False
    else:
        raise _fail("music", 'must be "none", "generated" or {"key": "<object key of an audio file in the bucket>"}',
                    "invalid_music")

    subtitles = document.get("subtitles", "none")
    if subtitles not in SUBTITLE_MODES:
        raise _fail("subtitles", f"{str(subtitles)[:40]!r} is not one of {', '.join(SUBTITLE_MODES)}", "invalid_subtitles")
    if subtitles != "none" and not any(scene.narration.strip() for scene in scenes):
        raise _fail("subtitles", "are made from the narration, and no scene has any", "invalid_subtitles")
    return Storyboard(scenes=scenes, voice=voice, music=music, music_generated=generated, subtitles=subtitles)


def _scene(index: int, raw: Any) -> Scene:
    where = f"scenes[{index}]"
    if not isinstance(raw, dict):
        raise _fail(where, 'must be an object such as {"prompt": "a fox", "duration_s": 3}', "invalid_scene")
    unknown = sorted(set(raw) - SCENE_FIELDS)
    if unknown:
        raise _fail(where, f"has unknown fields: {', '.join(unknown)}; allowed: {', '.join(sorted(SCENE_FIELDS))}",
                    "invalid_scene")
    try:
        prompt = _check_text("prompt", raw.get("prompt"), required=True)
        narration = _check_text("narration", raw.get("narration"), required=False)
    except ValidationError as error:
        field = error.field or "prompt"
        raise _fail(f"{where}.{field}", error.message.removeprefix(f"{field} "), error.code) from None
    if len(narration) > MAX_NARRATION_CHARS:
        raise _fail(f"{where}.narration", f"is {len(narration)} characters; the maximum is {MAX_NARRATION_CHARS}",
                    "narration_too_long")
    if "duration_s" not in raw:
        raise _fail(f"{where}.duration_s", "is missing: say how many seconds the scene lasts", "invalid_scene_duration")
    try:
        duration = _parse_float("duration_s", raw["duration_s"])
    except ValidationError as error:
        raise _fail(f"{where}.duration_s", error.message.removeprefix("duration_s "), "invalid_scene_duration") from None
    if not MIN_SCENE_S <= duration <= MAX_SCENE_S:
        raise _fail(f"{where}.duration_s", f"{show_number(duration)} is out of range: allowed "
                    f"{show_number(MIN_SCENE_S)} to {show_number(MAX_SCENE_S)} seconds", "invalid_scene_duration")
    transition = raw.get("transition", "cut") or "cut"
    if transition not in TRANSITIONS:
        raise _fail(f"{where}.transition", f"{str(transition)[:40]!r} is not one of {', '.join(TRANSITIONS)}",
                    "invalid_transition")
    return Scene(index=index, prompt=prompt, duration_s=duration, narration=narration.strip(), transition=transition)


def scene_seed(film_seed: int, index: int) -> int:
    """The seed of scene ``index``: a hash of the film's seed and the index, so scenes differ from each
    other and a film's scene keeps its seed when other scenes are edited."""
    digest = hashlib.sha256(f"videogen-scene:{film_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits, within the seed range


def frames_for(duration_s: float, fps: int) -> int:
    """Frames a duration shows at ``fps`` (at least one)."""
    return max(1, round(duration_s * fps))


def generated_frames(shown: int, frame_multiple: int) -> int:
    """Frames to generate for ``shown`` frames under the model's ``frame_multiple·k + 1`` rule."""
    return frame_multiple * max(0, math.ceil((shown - 1) / frame_multiple)) + 1
