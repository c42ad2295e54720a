"""Job ``generate_video``: one run per request, partitioned by job id.

validate_prompt → generate_frames → encode_video → check_quality → upload_outputs → finalize_job

Each op is one concern and calls one function of :mod:`videogen.stages`. Transient failures
(storage unavailable, CUDA out of memory) are retried with the configured backoff (5/15/45 s by
default) by raising ``RetryRequested``; Dagster's own ``RetryPolicy`` only offers 2ⁿ−1 multiples of
one delay, not an arbitrary schedule. When the retries are spent the job is marked ``failed`` with
the cause. A rejected or canceled request ends the run quietly: the op yields no output, so the
downstream ops are skipped and the run succeeds (it did what it should).
"""


import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg

import pipelines.pool_wait  # noqa: F401 - a step blocked on GENERATION_POOL sleeps instead of spinning
from pipelines.json_logger import json_console_logger
from pipelines.partitions import video_jobs_partitions
from resources.generation import GenerationResource
from resources.jobs import JobsResource
from resources.quality import QualityResource
from resources.storage import StorageResource
from videogen import stages
from videogen.deploy.profile import load_profile
from videogen.errors import JobCanceledError, TransientError, ValidationError, VideogenError
from videogen.heartbeat import JobHeartbeat
from videogen.lifecycle import random_seed
from videogen.logs import bind
from videogen.qa import QaReport, QualityGateError

T = TypeVar("T")

def _job_id(context: dg.OpExecutionContext) -> int:
    job_id = int(context.partition_key)
    # Every later log line of this op (ours, the libraries', Dagster's) carries the job and the run.
    bind(job_id=job_id, run_id=context.run_id)
    return job_id


def _with_transient_retries(
    context: dg.OpExecutionContext, jobs: JobsResource, job_id: int, stage: str, work: Callable[[], T],
    *, passthrough: tuple[type[BaseException], ...] = (),
) -> T:
    """Run ``work``; on a TransientError retry with the configured backoff, then fail the job. Errors
    of the ``passthrough`` types are raised as they are (they have already been recorded)."""
    delays = jobs.retry_delays()
    store = jobs.store()
    try:
        return work()
    except passthrough:
        raise
    except TransientError as error:
        attempt = context.retry_number  # 0 on the first try
        if attempt < len(delays):
            store.runs.record_event(
                job_id, stage=stage, run_id=context.run_id,
                message=f"{error.code}: {error.message}; retry {attempt + 1} of {len(delays)} in {delays[attempt]:g} s",
            )
            raise dg.RetryRequested(max_retries=len(delays), seconds_to_wait=delays[attempt]) from error
        store.runs.fail(job_id, code=error.code, message=f"{error.message} (after {len(delays)} retries)",
                   run_id=context.run_id, stage=stage)
        raise
    except JobCanceledError:
        store.runs.record_event(job_id, stage=stage, run_id=context.run_id, message="stopped: the job was canceled")
        raise dg.Failure(description=f"job {job_id} was canceled", allow_retries=False) from None
    except VideogenError as error:
        # Permanent and known (bad storage credentials, an encoder error…): no retry, the cause is kept.
        store.runs.fail(job_id, code=error.code, message=error.message, run_id=context.run_id, stage=stage)
        raise
    except Exception as error:
        # A bug or an unexpected library error: permanent, record it so the job does not stay running.
        store.runs.fail(job_id, code="internal_error", message=f"{type(error).__name__}: {error}",
                   run_id=context.run_id, stage=stage)
        raise


def claim_job(context: dg.OpExecutionContext, jobs: JobsResource, job_id: int, work: Callable[[], T]) -> T:
    """Claim and validate the run's job with ``work``. A rejection (ValidationError, recorded by the
    claim) or a job not to run passes through; any other error fails the job (a transient one after
    its retries), so a TTS or storage failure never leaves it running. The heartbeat starts first: it
    only writes once the claim has made the job running under this run, and then covers a long
    validation (speaking a film's narration, transcribing an audio prompt)."""
    jobs.keep_alive(job_id, context.run_id)
    return _with_transient_retries(context, jobs, job_id, "validate", work,
                                   passthrough=(ValidationError, stages.JobNotRunnable))


def _run_stage(
    context: dg.OpExecutionContext, jobs: JobsResource, job_id: int, stage: str, message: str,
    work: Callable[[JobHeartbeat], T],
) -> T:
    """Record the stage in the audit trail, keep the job's heartbeat going, retry transient failures."""
    bind(job_id=job_id, run_id=context.run_id)
    jobs.store().runs.record_event(job_id, stage=stage, run_id=context.run_id, message=message)
    heartbeat = jobs.keep_alive(job_id, context.run_id)
    return _with_transient_retries(context, jobs, job_id, stage, lambda: work(heartbeat))


@dg.op(
    out=dg.Out(stages.ValidatedJob, is_required=False),
    description="Claims the job (status running), transcribes an audio prompt, and validates prompt and "
    "parameters; invalid → rejected.",
)
def validate_prompt(context: dg.OpExecutionContext, jobs: JobsResource, generation: GenerationResource,
                    storage: StorageResource) -> Iterator[dg.Output]:
    job_id = _job_id(context)
    try:
        record = context.instance.get_run_record_by_id(context.run_id)
        validated = claim_job(context, jobs, job_id, lambda: stages.claim_and_validate(
            jobs.store(), generation.registry(), job_id, context.run_id,
            run_created_at=record.create_timestamp if record else None, model_cache=generation.model_cache,
            storage=storage.client(), transcriber=generation.transcriber()))
    except stages.JobNotRunnable as reason:
        context.log.warning(str(reason))
        return
    except ValidationError as error:
        context.log.warning(f"job {job_id} rejected: {error.code}: {error.message}")
        return
    # From here on the job is running: its heartbeat (started by claim_job) lasts until the run ends,
    # through any wait for a generation slot.
    context.add_output_metadata({"model": validated.request.model, "credits": float(validated.request.credits),
                                 "seed": validated.request.seed})
    yield dg.Output(validated)


# The one pool of generation slots: its limit (dagster_home/dagster.yaml, the Helm values) is the
# requests the Serve app holds (per replica one generating, one waiting in it), so runs wait for a
# slot only around this step and validate, encode and upload of other requests overlap the generation.
GENERATION_POOL = "videogen_generation"


@dg.op(
    description="Generates the frames (Ray Serve when VIDEOGEN_SERVE_URL is set, else in this process) "
    "and reports denoising progress.",
    pool=GENERATION_POOL,
)
def generate_frames(
    context: dg.OpExecutionContext, validated: stages.ValidatedJob, jobs: JobsResource, generation: GenerationResource
) -> stages.GeneratedFrames:
    store = jobs.store()
    job_id = validated.job_id
    last_report = [0.0]

    def on_step(step: int, steps: int) -> None:
        # At most two progress writes a second: a tiny model takes ~0.1 s a step, a real one seconds.
        now = time.monotonic()
        if step == steps or now - last_report[0] >= 0.5:
            last_report[0] = now
            store.runs.set_progress(job_id, stage="generate", progress=step / steps)
            context.log.info(f"job {job_id}: denoising step {step}/{steps}")

    generated = _run_stage(
        context, jobs, job_id, "generate", f"generating with model {validated.request.model}",
        lambda heartbeat: stages.generate(generation.generator(), validated, on_step=on_step,
                                          should_cancel=lambda: heartbeat.canceled,
                                          request_id=f"job-{job_id}-run-{context.run_id}"),
    )
    store.runs.add_gpu_seconds(job_id, generated.gpu_seconds)
    context.add_output_metadata({"gpu_seconds": generated.gpu_seconds,
                                 "frames": int(generated.frames.shape[0])})
    return generated


@dg.op(description="Encodes the frames to MP4 (H.264 yuv420p +faststart) with ffmpeg, plus thumbnails.")
def encode_video(
    context: dg.OpExecutionContext, validated: stages.ValidatedJob, generated: stages.GeneratedFrames,
    jobs: JobsResource, storage: StorageResource,
) -> stages.EncodedOutputs:
    encoded = _run_stage(context, jobs, validated.job_id, "encode", "encoding",
                         lambda _: stages.encode(validated, generated, codec=storage.codec))
    context.add_output_metadata({"video_bytes": len(encoded.files[stages.VIDEO_NAME]),
                                 "encode_seconds": encoded.encode_seconds})
    return encoded


# Gates that judge the generated content (not the encoding): another seed may pass them.
REGENERABLE_GATES = ("qa_black_frames", "qa_frozen_frames")


@dg.op(out=dg.Out(stages.EncodedOutputs, is_required=False),
       description="Runs the output QA gates on the encoded video (decodes; size, frames, fps, duration; no "
       "black or frozen run); a failed gate fails the job with a qa_* code (or, configured, regenerates once).")
def check_quality(
    context: dg.OpExecutionContext, validated: stages.ValidatedJob, encoded: stages.EncodedOutputs,
    jobs: JobsResource, quality: QualityResource,
) -> Iterator[dg.Output]:
    checked = run_quality_gates(context, jobs, quality, validated.job_id, "checking the output",
                                lambda: stages.check_quality(validated, encoded, quality.limits()))
    if checked is not None:
        context.add_output_metadata({"qa_seconds": checked.qa["seconds"]})
        yield dg.Output(checked)


def run_quality_gates(context: dg.OpExecutionContext, jobs: JobsResource, quality: QualityResource, job_id: int,
                      message: str, check: Callable[[], stages.EncodedOutputs]) -> stages.EncodedOutputs | None:
    """Run the gates; on success record them. A black or frozen run, when VIDEOGEN_QA_REGENERATE is on
    and the job was not regenerated before, sends the job back to the queue with a new seed (None:
    nothing more for this run); any other failure fails the job (qa_* code)."""

    def gated() -> stages.EncodedOutputs | None:
        try:
            return check()
        except QualityGateError as error:
            if quality.regenerate and error.code in REGENERABLE_GATES and jobs.store().runs.regenerate(
                    job_id, run_id=context.run_id, seed=random_seed(), reason=f"{error.code}: {error.report.summary()}"):
                context.log.warning(f"job {job_id}: {error.code}; generating once more with a new seed")
                return None
            raise

    checked = _run_stage(context, jobs, job_id, "qa", message, lambda _: gated())
    if checked is not None:
        jobs.store().runs.record_event(job_id, stage="qa", run_id=context.run_id,
                                       message=QaReport.from_dict(checked.qa).summary())
    return checked


@dg.op(description="Uploads video, thumbnails and metadata.json to the bucket and verifies them.")
def upload_outputs(
    context: dg.OpExecutionContext, validated: stages.ValidatedJob, encoded: stages.EncodedOutputs,
    jobs: JobsResource, storage: StorageResource,
) -> stages.StoredOutputs:
    stored = _run_stage(context, jobs, validated.job_id, "upload", "uploading outputs",
                        lambda _: stages.upload(storage.client(), validated, encoded))
    context.add_output_metadata({"video_uri": stored.video_uri, "sha256": stored.sha256})
    return stored


@dg.op(description="Writes the final status (succeeded) and the output location back to `jobs`.")
def finalize_job(
    context: dg.OpExecutionContext, validated: stages.ValidatedJob, stored: stages.StoredOutputs, jobs: JobsResource
) -> None:
    if not stages.finalize(jobs.store(), validated, stored, run_id=context.run_id):
        # Canceled while the last stage ran: the outputs exist but the job keeps its canceled status.
        context.log.warning(f"job {validated.job_id} was not running any more; status left unchanged")


def generation_executor() -> dg.ExecutorDefinition:
    """Every op in the run's own process, locally and in production (one run pod per request on
    Kubernetes): the GPU work happens in the Ray Serve app (VIDEOGEN_SERVE_URL), so a pod per op would
    only add pod starts and pickle the frames between pods (see docs/kubernetes.md).
    An incomplete production configuration fails here, when the code location loads."""
    load_profile(os.environ)  # raises ProductionConfigError, naming every missing variable
    return dg.in_process_executor


# What every generation job (generate_video, generate_film) is: one partition per row of `jobs`, the
# in-process executor, JSON logs.
GENERATION_JOB_OPTIONS = {
    "partitions_def": video_jobs_partitions,
    "executor_def": generation_executor(),
    # Transient failures are retried inside the run (per op) and dead workers by the reconciliation
    # sensor, so Dagster's whole-run retries stay off.
    "tags": {"dagster/max_retries": "0", "team": "ml-platform"},
    "logger_defs": {"console": json_console_logger},
    # Named in the run config so that it replaces Dagster's default console logger in every run.
    "config": {"loggers": {"console": {"config": {"log_level": "INFO"}}}},
}


@dg.job(description="Generates one video for one row of `jobs` (partition key = job id).", **GENERATION_JOB_OPTIONS)
def generate_video() -> None:
    validated = validate_prompt()
    generated = generate_frames(validated)
    encoded = encode_video(validated, generated)
    checked = check_quality(validated, encoded)
    stored = upload_outputs(validated, checked)
    finalize_job(validated, stored)
