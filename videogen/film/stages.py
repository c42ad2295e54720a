"""The stages of one film, as plain functions (the ``generate_film`` ops are thin wrappers over them).

plan (claim, validate, voice-over, scene plan) → one ``generate_scene`` per scene (cached by content
hash) → assemble (picture, soundtrack, subtitles, chapters, thumbnails; one MP4) → QA → upload →
finalize. Scenes' frames travel through the object storage's scene cache (``cache/scenes/<hash>.npz``),
not between steps, so the fan-in step reads exactly what each scene step stored.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from videogen import stages
from videogen.errors import ValidationError
from videogen.film.plan import FilmPlan, ScenePlan, plan_film, validate_film
from videogen.film.voices import VoiceRegistry
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import JobStore, random_seed
from videogen.storage.uploads import check_owned

SCENE_CACHE_PREFIX = "cache/scenes/"
SRT_NAME = "subtitles.srt"
VTT_NAME = "subtitles.vtt"


def scene_cache_key(cache_key: str) -> str:
    return f"{SCENE_CACHE_PREFIX}{cache_key}.npz"


@dataclass(frozen=True)
class PlannedFilm:
    job: stages.ValidatedJob  # request: the film's parameters (prompt = title, num_frames = the film's)
    plan: FilmPlan
    plan_seconds: float


@dataclass(frozen=True)
class SceneClip:
    index: int
    cache_key: str
    cached: bool  # True when the clip came from the cache (no generation)
    gpu_seconds: float
    seconds: float


@dataclass(frozen=True)
class AssembledFilm:
    encoded: stages.EncodedOutputs
    cues: tuple[Any, ...]  # videogen.qa.Cue
    has_audio: bool
    phases: dict[str, float] = field(default_factory=dict)  # seconds per part of the assembly


def claim_and_plan(store: JobStore, registry: ModelRegistry, storage: Any, job_id: int, run_id: str, *,
                   voices: VoiceRegistry, run_created_at: datetime | None = None) -> PlannedFilm:
    """Claim the film (running), validate it, speak its narration and plan its scenes.
    Raises JobNotRunnable, or ValidationError after recording ``rejected``."""
    started = time.perf_counter()
    row = store.runs.claim(job_id, run_id, run_created_at=run_created_at)
    if row is None:
        raise stages.JobNotRunnable(f"job {job_id} is {store.reads.status_of(job_id)}; run {run_id} will not process it")
    try:
        film = validate_film(row, registry, seed_if_missing=random_seed(), voices=voices)
        music = film.storyboard.music
        if music is not None and not film.storyboard.music_generated:
            check_owned(music, row["user_id"], field="storyboard.music.key", code="music_not_found")
        if music is not None and not film.storyboard.music_generated and not storage.exists(music):
            raise ValidationError(f"storyboard.music.key: no object {music!r} in the bucket; upload the music file "
                                  "first or choose \"generated\"", code="music_not_found", field="storyboard.music.key")
        with tempfile.TemporaryDirectory(prefix=f"videogen-plan-{job_id}-") as workdir:
            plan = plan_film(film, registry, model_revision=registry.get(film.request.model).revision,
                             voices=voices, workdir=workdir)
    except ValidationError as error:
        store.runs.reject(job_id, error, run_id)
        raise
    request = plan.request.request
    store.runs.save_validated(job_id, request)
    spec = registry.get(request.model)
    store.runs.record_event(job_id, stage="validate", run_id=run_id,
                            message=f"film of {len(plan.scenes)} scenes, {plan.total_frames / plan.fps:.2f} s, is valid")
    job = stages.ValidatedJob(job_id=job_id, user_id=row["user_id"], request=request, model_revision=spec.revision,
                              pipeline_class=spec.pipeline_class)
    return PlannedFilm(job=job, plan=plan, plan_seconds=time.perf_counter() - started)


def generate_scene(generator: Any, storage: Any, job: stages.ValidatedJob, scene: ScenePlan, *,
                   on_step: Callable[[int, int], None] | None = None,
                   should_cancel: Callable[[], bool] | None = None, request_id: str = "") -> SceneClip:
    """The scene's clip from the cache, or generated (and then cached)."""
    started = time.perf_counter()
    key = scene_cache_key(scene.cache_key)
    if storage.exists(key):
        return SceneClip(scene.index, scene.cache_key, True, 0.0, time.perf_counter() - started)
    scene_job = replace(job, request=scene.request)
    generated = stages.generate(generator, scene_job, on_step=on_step, should_cancel=should_cancel,
                                request_id=request_id)
    with tempfile.TemporaryDirectory(prefix=f"videogen-scene-{job.job_id}-") as workdir:
        path = Path(workdir) / "frames.npz"
        np.savez_compressed(path, frames=generated.frames)
        storage.put_file(key, path)
    return SceneClip(scene.index, scene.cache_key, False, generated.gpu_seconds, time.perf_counter() - started)


def load_scene_frames(storage: Any, cache_key: str) -> np.ndarray:
    with np.load(io.BytesIO(storage.read_bytes(scene_cache_key(cache_key))), allow_pickle=False) as archive:
        return archive["frames"]


def assemble(storage: Any, planned: PlannedFilm, clips: Sequence[SceneClip], *, codec: str,
             loudness_lufs: float) -> AssembledFilm:
    """The film's MP4 (+ subtitles and thumbnails per scene), from the cached scene clips."""
    from videogen.encoding.thumbnails import encode_png, write_thumbnails
    from videogen.film import audio, subtitles
    from videogen.film.assembly import Chapter, SceneFrames, compose, encode_film

    plan, job = planned.plan, planned.job
    by_index = {clip.index: clip for clip in clips}
    if sorted(by_index) != [scene.index for scene in plan.scenes]:
        raise ValueError(f"scene clips {sorted(by_index)} do not match the plan's {len(plan.scenes)} scenes")
    phases: dict[str, float] = {}
    started = time.perf_counter()
    frames = compose([SceneFrames(load_scene_frames(storage, by_index[s.index].cache_key), s.shown_frames,
                                  s.fade_frames) for s in plan.scenes])
    phases["compose"] = time.perf_counter() - started
    duration = len(frames) / plan.fps
    storyboard = plan.request.storyboard
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix=f"videogen-film-{job.job_id}-") as workdir:
        work = Path(workdir)
        started = time.perf_counter()
        narrations = []
        for scene in plan.scenes:
            if scene.speech is not None:
                path = work / f"narration_{scene.index:02d}.wav"
                path.write_bytes(scene.speech)
                narrations.append((scene, path))
        voice = (audio.voice_track([audio.PlacedSpeech(s.start_s, p) for s, p in narrations], duration,
                                   work / "voice.wav") if narrations else None)
        music = None
        if storyboard.music is not None:
            source = None
            if not storyboard.music_generated:
                source = work / "music_source"
                source.write_bytes(storage.read_bytes(storyboard.music))
                audio.check_music_file(source, key=storyboard.music)
            music = audio.music_bed(duration, work / "music.wav", source=source)
        soundtrack = audio.mix(voice, music, duration, work / "soundtrack.wav",
                               target_lufs=loudness_lufs) if storyboard.has_audio else None
        phases["soundtrack"] = time.perf_counter() - started

        cues = subtitles.cues_for([subtitles.TimedNarration(s.start_s, s.speech_s, s.narration) for s, _ in narrations])
        if storyboard.subtitles != "none":
            (work / SRT_NAME).write_text(subtitles.to_srt(cues), encoding="utf-8")
            files[SRT_NAME] = (work / SRT_NAME).read_bytes()
            files[VTT_NAME] = subtitles.to_webvtt(cues).encode("utf-8")
        chapters = [Chapter(s.start_s, s.start_s + s.duration_s, f"Scene {s.index + 1}: {s.prompt[:80]}")
                    for s in plan.scenes]
        started = time.perf_counter()
        film = encode_film(frames, fps=plan.fps, output_path=work / stages.VIDEO_NAME, workdir=work,
                           chapters=chapters, audio=soundtrack.path if soundtrack else None,
                           burn_subtitles=work / SRT_NAME if storyboard.subtitles == "burned" else None,
                           preset=job.request.quality_preset, codec=codec)
        phases["encode"] = time.perf_counter() - started
        video = {stages.VIDEO_NAME: film.path.read_bytes()}
        thumbnails = write_thumbnails(frames, work)
        files = {**video, **{name: path.read_bytes() for name, path in thumbnails.files().items()}, **files}
        for scene in plan.scenes:  # one picture per scene: its middle frame in the film
            middle = round(scene.start_s * plan.fps) + scene.shown_frames // 2
            files[f"scene_{scene.index + 1:02d}.png"] = encode_png(frames[middle])
    encoder = {**film.settings, "audio": "aac" if soundtrack else None,
               "loudness_lufs": soundtrack.output_lufs if soundtrack else None}
    encoded = stages.EncodedOutputs(job_id=job.job_id, files=files, encoder=encoder,
                                    encode_seconds=phases["encode"])
    return AssembledFilm(encoded=encoded, cues=tuple(cues) if storyboard.subtitles != "none" else (),
                         has_audio=soundtrack is not None, phases=phases)


def check_quality(planned: PlannedFilm, assembled: AssembledFilm, limits: Any) -> stages.EncodedOutputs:
    """The clip's QA gates (videogen.stages.check_quality) with the film's frames, audio and subtitles."""
    return stages.check_quality(planned.job, assembled.encoded, limits, frames=planned.plan.total_frames,
                                audio=assembled.has_audio, cues=assembled.cues)


def film_metadata(planned: PlannedFilm, clips: Sequence[SceneClip], phases: dict[str, float]) -> dict[str, Any]:
    """What metadata.json says of the film beyond a clip's fields: the storyboard, each scene, timings."""
    by_index = {clip.index: clip for clip in clips}
    return {
        "storyboard": planned.plan.request.storyboard.to_dict(),
        "scenes": [{"index": s.index, "prompt": s.prompt, "seed": s.request.seed, "start_s": round(s.start_s, 3),
                    "frames": s.shown_frames, "generated_frames": s.request.num_frames, "fade_frames": s.fade_frames,
                    "narration_s": round(s.speech_s, 3), "cache_key": s.cache_key,
                    "from_cache": by_index[s.index].cached if s.index in by_index else None}
                   for s in planned.plan.scenes],
        "phases_s": {name: round(seconds, 3) for name, seconds in phases.items()},
    }
