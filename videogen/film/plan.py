"""From a film request to a plan: every scene's exact frames, start, seed, narration and cache key.

:func:`validate_film` runs at submission and in the run (like :func:`videogen.validation.validate_request`
for a clip): the job's parameters are every scene's defaults, the storyboard is checked field by
field, each scene must fit the model's frame limit, and the price is the sum of the scenes' clips.

:func:`plan_film` runs in the film's first step: it synthesizes each narration (the voice-over) and
**stretches a scene to its narration** when the speech (plus ``NARRATION_PAD_S``) is longer than the
scene; speech is never sped up or cut. The price, reserved at submission, was computed on the
narration's estimated length (:data:`ESTIMATED_CHARS_PER_S`), which covers the real speech.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from videogen.credits import credits_for
from videogen.errors import ValidationError
from videogen.film.storyboard import (
    CROSSFADE_S, MAX_FILM_S, Scene, Storyboard, frames_for, generated_frames, scene_seed, validate_storyboard,
)
from videogen.film.voices import VoiceRegistry, synthesize
from videogen.generation.registry import ModelRegistry, ModelSpec
from videogen.validation import ValidatedRequest, show_number, validate_request

NARRATION_PAD_S = 0.5  # silence after the narration before the scene ends
# Before the narration is spoken (at submission), its length is estimated at this rate: slower than
# the built-in voices speak (flite: 13-17 characters a second), so that the price and the limits
# checked then cover the scene once stretched to its real speech.
ESTIMATED_CHARS_PER_S = 10.0


def estimated_duration_s(scene: Scene) -> float:
    """The scene's duration once stretched to its narration, as estimated before speaking it."""
    if not scene.narration:
        return scene.duration_s
    return max(scene.duration_s, len(scene.narration) / ESTIMATED_CHARS_PER_S + NARRATION_PAD_S)


@dataclass(frozen=True)
class FilmRequest:
    request: ValidatedRequest  # the film's parameters; prompt = the film's title; num_frames = the film's
    storyboard: Storyboard
    credits: Decimal


@dataclass(frozen=True)
class ScenePlan:
    index: int
    count: int  # scenes in the film
    prompt: str
    narration: str
    transition: str
    start_s: float
    shown_frames: int  # frames the scene shows in the film
    fade_frames: int  # extra frames blended into the next scene (crossfade), else 0
    request: ValidatedRequest  # what the scene's clip is generated with (num_frames = generated frames)
    cache_key: str  # sha256 of everything that determines the clip's frames
    speech: bytes | None = None  # the narration's WAV
    speech_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.shown_frames / self.request.fps


@dataclass(frozen=True)
class FilmPlan:
    request: FilmRequest
    scenes: tuple[ScenePlan, ...]

    @property
    def total_frames(self) -> int:
        return sum(scene.shown_frames for scene in self.scenes)

    @property
    def fps(self) -> int:
        return self.request.request.fps


def _fade_frames(scene: Scene, count: int, fps: int) -> int:
    return frames_for(CROSSFADE_S, fps) if scene.transition == "crossfade" and scene.index < count - 1 else 0


def _fit(spec: ModelSpec, scene: Scene, shown: int, fade: int, fps: int, why: str) -> int:
    """Frames to generate for the scene, or a ValidationError when the model cannot make that many."""
    limits = spec.limits
    needed = generated_frames(shown + fade, limits.frame_multiple)
    if needed > limits.max_frames:
        longest = (limits.max_frames - fade) / fps
        raise ValidationError(
            f"storyboard.scenes[{scene.index}].duration_s: {why} {show_number(round(shown / fps, 3))} s, "
            f"{needed} frames at {fps} fps; model {spec.name!r} makes at most {limits.max_frames} frames per "
            f"scene (about {show_number(round(longest, 2))} s at {fps} fps)",
            code="scene_too_long", field=f"storyboard.scenes[{scene.index}].duration_s")
    return needed


def validate_film(raw: Mapping[str, Any], registry: ModelRegistry, *, seed_if_missing: int,
                  voices: VoiceRegistry | None = None) -> FilmRequest:
    voices = voices if voices is not None else VoiceRegistry.from_env()
    if raw.get("audio_prompt_key"):
        raise ValidationError("a job is either a film (storyboard) or a spoken prompt (audio_prompt_key), not both",
                              code="invalid_request", field="audio_prompt_key")
    storyboard = validate_storyboard(raw.get("storyboard"), voices=voices)
    # A film's own num_frames is its scenes' sum: the job's value is not a parameter of a film.
    base = validate_request({**raw, "num_frames": None, "prompt": raw.get("prompt") or storyboard.scenes[0].prompt},
                            registry, seed_if_missing=seed_if_missing)
    spec = registry.get(base.model)
    assert spec is not None
    credits = Decimal(0)
    total = 0
    for scene in storyboard.scenes:
        estimated = estimated_duration_s(scene)
        shown = frames_for(estimated, base.fps)
        why = "lasts" if estimated == scene.duration_s else "with its narration (estimated) the scene lasts"
        needed = _fit(spec, scene, shown, _fade_frames(scene, len(storyboard.scenes), base.fps), base.fps, why)
        credits += credits_for(num_frames=needed, width=base.width, height=base.height, steps=base.steps)
        total += shown
    _check_film_length(total / base.fps, "with their narration (estimated) the scenes last")
    return FilmRequest(request=replace(base, num_frames=total, credits=credits), storyboard=storyboard,
                       credits=credits)


def _check_film_length(seconds: float, what: str) -> None:
    if seconds > MAX_FILM_S:
        raise ValidationError(f"storyboard.scenes: {what} {show_number(round(seconds, 3))} s in all; a film may last "
                              f"at most {show_number(MAX_FILM_S)} s", code="storyboard_too_long",
                              field="storyboard.scenes")


def cache_key(request: ValidatedRequest, model_revision: str) -> str:
    """Everything that determines a clip's frames (not its encoding), hashed."""
    determining = {"model": request.model, "model_revision": model_revision, "prompt": request.prompt,
                   "negative_prompt": request.negative_prompt, "width": request.width, "height": request.height,
                   "num_frames": request.num_frames, "fps": request.fps, "steps": request.steps,
                   "guidance_scale": request.guidance_scale, "seed": request.seed}
    return hashlib.sha256(json.dumps(determining, sort_keys=True).encode()).hexdigest()


def plan_film(film: FilmRequest, registry: ModelRegistry, *, model_revision: str, voices: VoiceRegistry,
              workdir: str | Path) -> FilmPlan:
    """Speak each narration, stretch scenes to their speech, and fix every scene's frames and seed."""
    base, storyboard = film.request, film.storyboard
    spec = registry.get(base.model)
    assert spec is not None
    voice = voices.get(storyboard.voice)
    count = len(storyboard.scenes)
    scenes: list[ScenePlan] = []
    start_frame = 0
    for scene in storyboard.scenes:
        speech, speech_s = None, 0.0
        shown = frames_for(scene.duration_s, base.fps)
        if scene.narration:
            spoken = synthesize(scene.narration, voice, Path(workdir) / f"narration_{scene.index:02d}.wav")
            speech, speech_s = spoken.path.read_bytes(), spoken.duration_s
            shown = max(shown, frames_for(speech_s + NARRATION_PAD_S, base.fps))
        fade = _fade_frames(scene, count, base.fps)
        needed = _fit(spec, scene, shown, fade, base.fps, "with its narration the scene lasts")
        request = replace(base, prompt=scene.prompt, num_frames=needed, seed=scene_seed(base.seed, scene.index),
                          credits=credits_for(num_frames=needed, width=base.width, height=base.height,
                                              steps=base.steps))
        scenes.append(ScenePlan(index=scene.index, count=count, prompt=scene.prompt, narration=scene.narration,
                                transition=scene.transition, start_s=start_frame / base.fps, shown_frames=shown,
                                fade_frames=fade, request=request, cache_key=cache_key(request, model_revision),
                                speech=speech, speech_s=speech_s))
        start_frame += shown
    _check_film_length(start_frame / base.fps, "with their narration the scenes last")
    return FilmPlan(request=replace(film, request=replace(base, num_frames=start_frame)), scenes=tuple(scenes))
