"""Job ``generate_film``: one run per storyboard request, partitioned by job id like ``generate_video``.

plan_film ─┬─ generate_scene[scene_0] ─┐
           ├─ generate_scene[scene_1] ─┼─ assemble_film → check_film_quality → upload_film → finalize_job
           └─ generate_scene[…]       ─┘

``plan_film`` claims and validates the request, speaks each scene's narration (the voice-over) and
fans out one dynamic ``generate_scene`` step per scene. Each scene step takes a slot of the same
generation pool as a clip and goes through the same generator (Ray Serve, or in process), with a seed
derived from the film's seed and the scene's index; its clip is cached in the bucket by the hash of
what determines it, so a re-run after editing one scene generates only that scene. ``assemble_film``
fans in: picture (cuts, crossfades), music ducked under the voice at -16 LUFS, subtitles, chapters,
one MP4. The QA gates check the file before it is uploaded. Stages live in :mod:`videogen.film.stages`.
"""

import time
from collections.abc import Iterator

import dagster as dg

from pipelines.generate_video import (
    GENERATION_JOB_OPTIONS, GENERATION_POOL, _job_id, _run_stage, claim_job, finalize_job, run_quality_gates,
)
from resources.generation import GenerationResource
from resources.jobs import JobsResource
from resources.quality import QualityResource
from resources.storage import StorageResource
from videogen import stages
from videogen.errors import ValidationError
from videogen.film import stages as film
from videogen.film.plan import ScenePlan
from videogen.logs import bind


@dg.op(
    out={"planned": dg.Out(film.PlannedFilm, is_required=False),
         "scenes": dg.DynamicOut(ScenePlan, is_required=False)},
    description="Claims the film (running), validates its storyboard, speaks the narration and plans "
    "every scene (frames, seed, cache key); invalid → rejected. Fans out one step per scene.",
)
def plan_film(context: dg.OpExecutionContext, jobs: JobsResource, generation: GenerationResource,
              storage: StorageResource) -> Iterator[dg.Output | dg.DynamicOutput]:
    job_id = _job_id(context)
    try:
        record = context.instance.get_run_record_by_id(context.run_id)
        planned = claim_job(context, jobs, job_id, lambda: film.claim_and_plan(
            jobs.store(), generation.registry(), storage.client(), job_id, context.run_id, voices=generation.voices(),
            run_created_at=record.create_timestamp if record else None))
    except stages.JobNotRunnable as reason:
        context.log.warning(str(reason))
        return
    except ValidationError as error:
        context.log.warning(f"job {job_id} rejected: {error.code}: {error.message}")
        return
    context.add_output_metadata({"scenes": len(planned.plan.scenes), "frames": planned.plan.total_frames,
                                 "seed": planned.job.request.seed}, output_name="planned")
    yield dg.Output(planned, output_name="planned")
    for scene in planned.plan.scenes:
        yield dg.DynamicOutput(scene, mapping_key=f"scene_{scene.index}", output_name="scenes")


@dg.op(description="One scene's clip: from the scene cache, or generated like a clip (same pool, same "
       "generator) and cached.", pool=GENERATION_POOL)
def generate_scene(context: dg.OpExecutionContext, planned: film.PlannedFilm, scene: ScenePlan, jobs: JobsResource,
                   generation: GenerationResource, storage: StorageResource) -> film.SceneClip:
    store = jobs.store()
    job_id = planned.job.job_id
    bind(job_id=job_id, run_id=context.run_id)
    label = f"scene {scene.index + 1} of {scene.count}"
    status = store.reads.status_of(job_id)
    if status != "running":  # another scene failed the film, or it was canceled: generate nothing more
        raise dg.Failure(description=f"job {job_id} is {status}; {label} is not generated", allow_retries=False)
    last_report = [0.0]

    def on_step(step: int, steps: int) -> None:
        now = time.monotonic()
        if step == steps or now - last_report[0] >= 0.5:
            last_report[0] = now
            context.log.info(f"job {job_id}: {label}: denoising step {step}/{steps}")

    clip = _run_stage(
        context, jobs, job_id, "generate", f"{label}: {scene.prompt[:80]}",
        lambda heartbeat: film.generate_scene(generation.generator(), storage.client(), planned.job, scene,
                                              on_step=on_step,
                                              # canceled, or failed by another scene of the film
                                              should_cancel=lambda: heartbeat.status in ("canceled", "failed"),
                                              request_id=f"job-{job_id}-run-{context.run_id}-scene-{scene.index}"),
    )
    how = "from the scene cache" if clip.cached else f"generated in {clip.seconds:.1f} s"
    store.runs.record_event(job_id, stage="generate", run_id=context.run_id, message=f"{label} ready, {how}")
    done = sum(1 for e in store.reads.events(job_id)
               if e["run_id"] == context.run_id and " ready, " in (e["message"] or ""))
    store.runs.set_progress(job_id, stage="generate", progress=min(1.0, done / scene.count))
    if clip.gpu_seconds:
        store.runs.add_gpu_seconds(job_id, clip.gpu_seconds)
    context.add_output_metadata({"cached": clip.cached, "seconds": clip.seconds})
    return clip


@dg.op(description="Fans in: picture (cuts, crossfades), voice-over and music (ducked, EBU R128), subtitles, "
       "chapters and thumbnails per scene, encoded to one MP4.")
def assemble_film(context: dg.OpExecutionContext, planned: film.PlannedFilm, clips: list[film.SceneClip],
                  jobs: JobsResource, storage: StorageResource, quality: QualityResource) -> film.AssembledFilm:
    limits = quality.limits()
    assembled = _run_stage(context, jobs, planned.job.job_id, "encode", "assembling the film",
                           lambda _: film.assemble(storage.client(), planned, clips, codec=storage.codec,
                                                   loudness_lufs=limits.loudness_lufs))
    context.add_output_metadata({name: round(seconds, 3) for name, seconds in assembled.phases.items()})
    return assembled


@dg.op(out=dg.Out(stages.EncodedOutputs, is_required=False),
       description="Runs the QA gates on the film (decodes; size, frames, fps, duration; no black or frozen "
       "run; audio loudness and clipping; subtitle timing); a failed gate fails the job with a qa_* code (or, "
       "configured, regenerates once).")
def check_film_quality(context: dg.OpExecutionContext, planned: film.PlannedFilm, assembled: film.AssembledFilm,
                       jobs: JobsResource, quality: QualityResource) -> Iterator[dg.Output]:
    checked = run_quality_gates(context, jobs, quality, planned.job.job_id, "checking the film",
                                lambda: film.check_quality(planned, assembled, quality.limits()))
    if checked is not None:
        yield dg.Output(checked)


@dg.op(description="Uploads the film, subtitles, thumbnails and metadata.json (storyboard, scenes, QA) and "
       "verifies them.")
def upload_film(context: dg.OpExecutionContext, planned: film.PlannedFilm, clips: list[film.SceneClip],
                assembled: film.AssembledFilm, checked: stages.EncodedOutputs, jobs: JobsResource,
                storage: StorageResource) -> stages.StoredOutputs:
    phases = {"plan": planned.plan_seconds, "scenes": sum(clip.seconds for clip in clips), **assembled.phases,
              "qa": checked.qa["seconds"]}
    stored = _run_stage(context, jobs, planned.job.job_id, "upload", "uploading the film",
                        lambda _: stages.upload(storage.client(), planned.job, checked,
                                                film=film.film_metadata(planned, clips, phases)))
    context.add_output_metadata({"video_uri": stored.video_uri, "sha256": stored.sha256})
    return stored


@dg.op(description="The film's validated job (what finalize_job takes).")
def film_job(planned: film.PlannedFilm) -> stages.ValidatedJob:
    return planned.job


@dg.job(description="Generates one film (a storyboard of scenes) for one row of `jobs` (partition key = job id).",
        **GENERATION_JOB_OPTIONS)
def generate_film() -> None:
    planned, scenes = plan_film()
    clips = scenes.map(lambda scene: generate_scene(planned, scene)).collect()
    assembled = assemble_film(planned, clips)
    checked = check_film_quality(planned, assembled)
    stored = upload_film(planned, clips, assembled, checked)
    finalize_job(film_job(planned), stored)
