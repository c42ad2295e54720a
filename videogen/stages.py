"""The stages of one generation job, as plain functions with explicit dependencies.

The Dagster ops in ``pipelines/generate_video.py`` are thin wrappers over these: each op calls one
stage, so every stage can be run and tested without Dagster. Values returned here are what travels
between ops (through the run's IO manager), so they are small, picklable dataclasses; the encoded
video travels as bytes so that steps may run in different pods.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from videogen.config import DEFAULT_CODEC
from videogen.errors import ValidationError
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import JobStore, random_seed
from videogen.validation import ValidatedRequest, validate_request

VIDEO_NAME = "video.mp4"
METADATA_NAME = "metadata.json"


@dataclass(frozen=True)
class ValidatedJob:
    job_id: int
    user_id: str
    request: ValidatedRequest
    model_revision: str
    # What the generation step loads, from the registry's ModelSpec (recorded in metadata.json).
    pipeline_class: str | None = None
    model_source: str | None = None  # relative to the model cache, or a hub id: never a machine path
    model_source_location: str | None = None  # "model_cache", "hub" or "local_directory"


@dataclass(frozen=True)
class GeneratedFrames:
    job_id: int
    frames: Any  # numpy uint8 (num_frames, height, width, 3)
    gpu_seconds: float


@dataclass(frozen=True)
class EncodedOutputs:
    job_id: int
    files: dict[str, bytes]  # file name -> content; the video first, then thumbnails
    encoder: dict[str, Any] = field(default_factory=dict)
    encode_seconds: float = 0.0
    qa: dict[str, Any] = field(default_factory=dict)  # the QA report (videogen.qa), once checked


@dataclass(frozen=True)
class StoredOutputs:
    job_id: int
    video_uri: str
    thumbnail_uri: str
    metadata_uri: str
    size_bytes: int
    sha256: str


class JobNotRunnable(Exception):
    """The job must not run in this run (canceled, or another live run owns it)."""


def claim_and_validate(
    store: JobStore, registry: ModelRegistry, job_id: int, run_id: str, *, run_created_at: datetime | None = None,
    model_cache: Path | str | None = None, storage: Any = None, transcriber: Any = None,
) -> ValidatedJob:
    """Mark the job ``running`` and validate it. Raises ValidationError after recording ``rejected``.

    ``run_created_at`` (when the orchestrator created the run) dates the ``queued`` transition when
    the run starts before the sensor has confirmed it. ``model_cache`` (the generation step's; by
    default ``VIDEOGEN_MODEL_CACHE``) places the model's source for metadata.json."""
    row = store.runs.claim(job_id, run_id, run_created_at=run_created_at)
    if row is None:
        status = store.reads.status_of(job_id)
        raise JobNotRunnable(f"job {job_id} is {status}; run {run_id} will not process it")
    try:
        if row.get("audio_prompt_key"):
            row = _transcribed(store, storage, row, run_id, transcriber)
        request = validate_request(row, registry, seed_if_missing=random_seed())
    except ValidationError as error:
        store.runs.reject(job_id, error, run_id)
        raise
    store.runs.save_validated(job_id, request)
    spec = registry.get(request.model)
    assert spec is not None  # validate_request checked it
    store.runs.record_event(job_id, stage="validate", message="request is valid", run_id=run_id)
    location, source = spec.recorded_source(_model_cache(model_cache))
    return ValidatedJob(job_id=job_id, user_id=row["user_id"], request=request, model_revision=spec.revision,
                        pipeline_class=spec.pipeline_class, model_source=source, model_source_location=location)


def _transcribed(store: JobStore, storage: Any, row: dict[str, Any], run_id: str, transcriber: Any) -> dict[str, Any]:
    """The row with its audio prompt's transcript as the prompt (also stored on the job)."""
    from videogen.audio_prompt import transcribe_prompt
    from videogen.storage.uploads import check_owned

    if storage is None:
        raise ValueError("a job with an audio prompt needs the storage to read it from")
    check_owned(row["audio_prompt_key"], row["user_id"], field="audio_prompt", code="audio_not_found")
    transcript = transcribe_prompt(storage, row["audio_prompt_key"], transcriber)
    store.runs.save_transcript(row["id"], transcript.text)
    store.runs.record_event(row["id"], stage="validate", run_id=run_id,
                            message=f"audio prompt ({transcript.format}, {transcript.duration_s:.1f} s) "
                                    f"transcribed: {transcript.text!r}")
    return {**row, "prompt": transcript.text, "transcript": transcript.text}


def _model_cache(given: Path | str | None) -> Path | None:
    if given is not None:
        return Path(given)
    try:
        from videogen.config import load_settings

        return load_settings().model_cache
    except Exception:  # a setting that does not parse is reported where it is used; here it only places the source
        return None


def generation_params(request: ValidatedRequest):
    """The validated request as the generator's parameters (GenerationParams is a subset of its fields)."""
    from dataclasses import fields

    from videogen.generation.generate import GenerationParams

    return GenerationParams(**{f.name: getattr(request, f.name) for f in fields(GenerationParams)})


def generate(
    generator: Any,
    job: ValidatedJob,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    request_id: str = "",
) -> GeneratedFrames:
    """Frames for ``job`` from ``generator`` (the Serve client, or generation in this process)."""
    result = generator.generate(job.request.model, generation_params(job.request), request_id=request_id,
                                on_step=on_step, should_cancel=should_cancel)
    return GeneratedFrames(job_id=job.job_id, frames=result.frames, gpu_seconds=result.seconds)


def encode(job: ValidatedJob, generated: GeneratedFrames, *, codec: str = DEFAULT_CODEC) -> EncodedOutputs:
    from videogen.encoding.encoder import encode_video
    from videogen.encoding.thumbnails import write_thumbnails

    with tempfile.TemporaryDirectory(prefix=f"videogen-encode-{job.job_id}-") as workdir:
        work = Path(workdir)
        encoded = encode_video(
            generated.frames,
            fps=job.request.fps,
            output_path=work / VIDEO_NAME,
            preset=job.request.quality_preset,
            codec=codec,
        )
        thumbnails = write_thumbnails(generated.frames, work)
        files = {VIDEO_NAME: encoded.path.read_bytes()}
        files.update({name: path.read_bytes() for name, path in thumbnails.files().items()})
    return EncodedOutputs(
        job_id=job.job_id, files=files, encoder=encoded.settings.to_dict(), encode_seconds=encoded.encode_seconds
    )


def check_quality(job: ValidatedJob, encoded: EncodedOutputs, limits: Any, *, frames: int | None = None,
                  audio: bool = False, cues: Any = None) -> EncodedOutputs:
    """Run the QA gates (videogen.qa) on the encoded video; raises QualityGateError (permanent, code
    ``qa_*``) when one fails. The report travels on to metadata.json. ``frames`` (default: the
    request's), ``audio`` and ``cues`` are what a film adds to a clip's expectations."""
    from dataclasses import replace

    from videogen.encoding.presets import normalize_codec
    from videogen.qa import Expectations, check_output

    request = job.request
    codec = normalize_codec(encoded.encoder.get("codec") or DEFAULT_CODEC).probe_name
    expected = Expectations.within(limits, audio=audio, width=request.width, height=request.height,
                                   frames=request.num_frames if frames is None else frames, fps=request.fps,
                                   codec=codec, cues=list(cues) if cues else None)
    report = check_output(encoded.files[VIDEO_NAME], expected)
    return replace(encoded, qa=report.to_dict())


def upload(storage: Any, job: ValidatedJob, encoded: EncodedOutputs, *, film: dict[str, Any] | None = None) -> StoredOutputs:
    """Upload video, thumbnails and metadata.json (last: it lists the others' checksums), verified.
    ``film``: a film's storyboard, scenes and timings, recorded in metadata.json."""
    from datetime import datetime, timezone

    from videogen.encoding.metadata import build_metadata, current_code_version, output_digests, write_metadata
    from videogen.storage.job_outputs import upload_job_outputs

    request = job.request
    with tempfile.TemporaryDirectory(prefix=f"videogen-upload-{job.job_id}-") as workdir:
        work = Path(workdir)
        paths: dict[str, Path] = {}
        for name, content in encoded.files.items():
            paths[name] = work / name
            paths[name].write_bytes(content)
        parameters = {key: value for key, value in request.parameters().items()
                      if key not in ("prompt", "negative_prompt", "seed", "model")}
        metadata = build_metadata(
            job_id=job.job_id,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            parameters=parameters,
            model_name=request.model,
            model_revision=job.model_revision,
            model_source=job.model_source,
            model_source_location=job.model_source_location,
            pipeline_class=job.pipeline_class,
            seed=request.seed,
            outputs=output_digests(paths),
            code_version=current_code_version(),
            created_at=datetime.now(timezone.utc),
            encoding=encoded.encoder,
            quality=encoded.qa or None,
            film=film,
        )
        paths[METADATA_NAME] = write_metadata(work / METADATA_NAME, metadata)
        stored = upload_job_outputs(storage, job.job_id, paths)
    video = stored[VIDEO_NAME]
    thumbnail = next(obj for name, obj in stored.items() if name.endswith("_middle.png"))
    return StoredOutputs(
        job_id=job.job_id,
        video_uri=video.uri,
        thumbnail_uri=thumbnail.uri,
        metadata_uri=stored[METADATA_NAME].uri,
        size_bytes=video.size,
        sha256=video.sha256,
    )


def finalize(store: JobStore, job: ValidatedJob, stored: StoredOutputs, *, run_id: str) -> bool:
    return store.runs.succeed(
        job.job_id,
        run_id=run_id,
        output_uri=stored.video_uri,
        thumbnail_uri=stored.thumbnail_uri,
        output_size_bytes=stored.size_bytes,
        output_sha256=stored.sha256,
    )
