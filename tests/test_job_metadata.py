"""metadata.json records the model that was loaded: its pipeline class and its source, placed in the
model cache (relative) or on the hub, never as an absolute path of the worker."""

import json
from dataclasses import replace

import dagster as dg
import sqlalchemy as sa

from videogen import stages
from videogen.generation.registry import BUILTIN_MODELS, ModelRegistry, ModelSpec
from videogen.lifecycle import JobRequest, JobStore
from videogen.storage import LocalObjectStorage, job_key

TINY = BUILTIN_MODELS["tiny"]
TINY_RECORD = {"name": "tiny", "revision": "random-weights-v1", "source": "tiny-ltx-random-weights-v1",
               "source_location": "model_cache", "pipeline_class": "LTXPipeline"}


def spec(source: str) -> ModelSpec:
    return ModelSpec(name="ltx-video", source=source, pipeline_class="LTXPipeline")


def test_recorded_source_is_relative_to_the_model_cache_or_a_hub_id(tmp_path):
    cache = tmp_path / "models"
    (cache / "Lightricks" / "LTX-Video-local").mkdir(parents=True)
    assert TINY.recorded_source(cache) == ("model_cache", "tiny-ltx-random-weights-v1")  # built there on first use
    assert spec("Lightricks/LTX-Video-local").recorded_source(cache) == ("model_cache", "Lightricks/LTX-Video-local")
    assert spec("Lightricks/LTX-Video").recorded_source(cache) == ("hub", "Lightricks/LTX-Video")
    inside = spec(str(cache / "Lightricks" / "LTX-Video-local"))
    assert inside.recorded_source(cache) == ("model_cache", "Lightricks/LTX-Video-local")
    outside = spec(str(tmp_path / "elsewhere" / "ltx-video-0.9"))
    assert outside.recorded_source(cache) == ("local_directory", "ltx-video-0.9")
    assert inside.recorded_source(None) == ("local_directory", "LTX-Video-local")  # cache unknown
    for candidate in (TINY, inside, outside):
        assert str(tmp_path) not in candidate.recorded_source(cache)[1]


def encoded_outputs(job_id: int) -> stages.EncodedOutputs:
    files = {stages.VIDEO_NAME: b"not really a video", "thumb_first.png": b"png", "thumb_middle.png": b"png",
             "thumb_last.png": b"png"}
    return stages.EncodedOutputs(job_id=job_id, files=files, encoder={"codec": "h264"})


def test_upload_records_the_registry_spec_that_generation_loads(engine, tmp_path):
    store = JobStore(engine)
    cache = tmp_path / "models"
    hub_model = spec("Lightricks/LTX-Video")
    registry = ModelRegistry({"tiny": TINY, "ltx-video": replace(hub_model, revision="v0.9.1")})
    storage = LocalObjectStorage(root=tmp_path / "storage", bucket="jobs-outputs")
    records = {}
    for model in ("tiny", "ltx-video"):
        job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a red fox", model=model)).job_id
        job = stages.claim_and_validate(store, registry, job_id, f"run-{job_id}", model_cache=cache)
        stages.upload(storage, job, encoded_outputs(job_id))
        text = storage.read_bytes(job_key(job_id, stages.METADATA_NAME)).decode()
        assert str(tmp_path) not in text
        records[model] = json.loads(text)["model"]
    assert records["tiny"] == TINY_RECORD
    assert records["ltx-video"] == {"name": "ltx-video", "revision": "v0.9.1", "source": "Lightricks/LTX-Video",
                                    "source_location": "hub", "pipeline_class": "LTXPipeline"}


def test_the_tiny_job_metadata_names_what_was_loaded(database_url, tmp_path):
    from pipelines.generate_video import generate_video
    from resources.generation import GenerationResource
    from resources.jobs import JobsResource
    from resources.quality import QualityResource
    from resources.storage import StorageResource

    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        job_id = conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'a red fox') RETURNING id")
                              ).scalar_one()
    engine.dispose()
    storage = StorageResource(root=str(tmp_path / "storage"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(job_id)])
        result = generate_video.execute_in_process(
            partition_key=str(job_id), instance=instance, raise_on_error=False,
            resources={"jobs": JobsResource(database_url=database_url, retry_delays_s="0.1"),
                       "generation": GenerationResource(model_cache=str(tmp_path / "models")),
                       "quality": QualityResource(),
                       "storage": storage})
    assert result.success
    text = storage.client().read_bytes(job_key(job_id, stages.METADATA_NAME)).decode()
    assert json.loads(text)["model"] == TINY_RECORD  # was {"source": null, "pipeline_class": null}
    assert str(tmp_path) not in text

