"""generate_video against S3 over real HTTP (moto's server mode): verified upload, presigned URL, storage down."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import requests
import sqlalchemy as sa

from pipelines.generate_video import generate_video
from resources.generation import GenerationResource
from resources.jobs import JobsResource
from resources.quality import QualityResource
from resources.storage import StorageResource
from tests.conftest import free_port
from videogen.lifecycle import JobRequest, JobStore


def run_job(database_url: str, storage: StorageResource, model_cache: Path, job_id: int) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(job_id)])
        return generate_video.execute_in_process(
            partition_key=str(job_id), instance=instance, raise_on_error=False,
            resources={
                "jobs": JobsResource(database_url=database_url, retry_delays_s="0.2,0.4,0.8"),
                "generation": GenerationResource(model_cache=str(model_cache)),
                "quality": QualityResource(),
                "storage": storage,
            },
        )


def test_video_lands_in_s3_verified_and_downloadable(database_url, moto_endpoint, tmp_path):
    store = JobStore(sa.create_engine(database_url))
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a red fox", seed=11)).job_id
    storage = StorageResource(backend="s3", endpoint_url=moto_endpoint, create_bucket=True)
    assert run_job(database_url, storage, tmp_path / "models", job_id).success
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded"
    assert row["output_uri"] == f"s3://jobs-outputs/videos/{job_id}/video.mp4"
    keys = storage.client().list_prefix(f"videos/{job_id}/")
    assert sorted(Path(k).name for k in keys) == ["metadata.json", "thumb_first.png", "thumb_last.png",
                                                  "thumb_middle.png", "video.mp4"]
    # `videogen status` prints a presigned URL; an ordinary HTTP client fetches exactly the stored video.
    env = {"DATABASE_URL": database_url, "VIDEOGEN_STORAGE_BACKEND": "s3", "VIDEOGEN_S3_ENDPOINT_URL": moto_endpoint}
    out = subprocess.run([sys.executable, "-m", "videogen.cli", "status", str(job_id), "--json"],
                         capture_output=True, text=True, env={**__import__("os").environ, **env}, check=True)
    url = json.loads(out.stdout)["download_url"]
    assert "X-Amz-Signature" in url and "X-Amz-Expires=3600" in url
    body = requests.get(url, timeout=30).content
    assert hashlib.sha256(body).hexdigest() == row["output_sha256"] and len(body) == row["output_size_bytes"]
    metadata = json.loads(storage.client().read_bytes(f"videos/{job_id}/metadata.json"))
    assert metadata["seed"] == 11 and metadata["prompt"] == "a red fox"
    assert metadata["outputs"]["video.mp4"]["sha256"] == row["output_sha256"]


def test_storage_down_is_retried_with_backoff_then_failed_with_the_cause(database_url, aws_test_environment, tmp_path):
    store = JobStore(sa.create_engine(database_url))
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a red fox")).job_id
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    storage = StorageResource(backend="s3", endpoint_url=dead)
    result = run_job(database_url, storage, tmp_path / "models", job_id)
    assert not result.success
    row = store.reads.get(job_id)
    assert row["status"] == "failed" and row["error_code"] == "storage_unavailable"
    assert dead in row["error_message"] and "after 3 retries" in row["error_message"]
    assert row["output_uri"] is None and row["output_sha256"] is None
    retries = [e["message"] for e in store.reads.events(job_id) if "retry" in (e["message"] or "")]
    assert [m.split("; ")[-1] for m in retries] == ["retry 1 of 3 in 0.2 s", "retry 2 of 3 in 0.4 s",
                                                    "retry 3 of 3 in 0.8 s"]
    up_for_retry = [e for e in result.all_events if e.step_key == "upload_outputs" and e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(up_for_retry) == 3  # Dagster itself re-ran the op three times
