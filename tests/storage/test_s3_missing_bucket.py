"""A missing S3 bucket (moto's server over HTTP): the message names the bucket and says how to fix it."""

import json
import os
import subprocess
import sys
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from videogen.errors import VideogenError
from videogen.storage import StorageRequestRejectedError, job_key

HOW_TO_FIX = "VIDEOGEN_S3_CREATE_BUCKET=1"


def assert_names_the_bucket_and_the_fix(message: str, bucket: str, endpoint: str, secret: str) -> None:
    assert f"bucket {bucket!r} does not exist at S3 endpoint {endpoint}" in message
    assert f"create the bucket {bucket!r}" in message and "VIDEOGEN_BUCKET" in message and HOW_TO_FIX in message
    assert secret not in message


@pytest.fixture
def missing_bucket(s3_factory):
    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    return s3_factory(bucket=bucket, create_bucket=False)


def test_upload_to_a_missing_bucket_says_which_and_how_to_fix_it(missing_bucket, moto_endpoint, fake_secret_key,
                                                                 tmp_path):
    payload = tmp_path / "video.mp4"
    payload.write_bytes(b"\x00" * 1000)
    with pytest.raises(StorageRequestRejectedError) as failure:
        missing_bucket.put_file(job_key(1, "video.mp4"), payload, "video/mp4")
    assert failure.value.code == "storage_bucket_missing"
    message = failure.value.message
    assert_names_the_bucket_and_the_fix(message, missing_bucket.bucket, moto_endpoint, fake_secret_key)
    assert "(NoSuchBucket, while trying to upload videos/1/video.mp4)" in message


def test_reading_or_listing_a_missing_bucket_is_not_a_missing_object(missing_bucket, moto_endpoint, fake_secret_key):
    # Before: a download answered "no object s3://…" (FileNotFoundError), hiding the real problem.
    for attempt in (lambda: missing_bucket.read_bytes(job_key(1, "metadata.json")),
                    lambda: missing_bucket.list_prefix("videos/1/"),
                    lambda: missing_bucket.delete_prefix("videos/1/")):
        with pytest.raises(StorageRequestRejectedError) as failure:
            attempt()
        assert_names_the_bucket_and_the_fix(failure.value.message, missing_bucket.bucket, moto_endpoint,
                                            fake_secret_key)


def test_create_bucket_option_creates_it_on_first_use(s3_factory, tmp_path):
    storage = s3_factory(bucket=f"created-{uuid.uuid4().hex[:12]}", create_bucket=True)
    payload = tmp_path / "video.mp4"
    payload.write_bytes(b"video")
    storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4")
    assert storage.read_bytes(job_key(1, "video.mp4")) == b"video"


def test_a_job_without_its_bucket_fails_at_once_with_the_fix_in_videogen_status(database_url, moto_endpoint,
                                                                                 fake_secret_key, tmp_path):
    from pipelines.generate_video import generate_video
    from resources.generation import GenerationResource
    from resources.jobs import JobsResource
    from resources.quality import QualityResource
    from resources.storage import StorageResource

    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        job_id = conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'a red fox') RETURNING id")
                              ).scalar_one()
    engine.dispose()
    storage = StorageResource(backend="s3", endpoint_url=moto_endpoint, bucket=bucket, create_bucket=False)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(job_id)])
        result = generate_video.execute_in_process(
            partition_key=str(job_id), instance=instance, raise_on_error=False,
            resources={"jobs": JobsResource(database_url=database_url, retry_delays_s="30,30,30"),
                       "generation": GenerationResource(model_cache=str(tmp_path / "models")),
                       "quality": QualityResource(),
                       "storage": storage})
        retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not result.success and retried == []  # permanent: not retried (the backoff would be 30 s)

    env = {**os.environ, "DATABASE_URL": database_url, "VIDEOGEN_HOME": str(tmp_path),
           "VIDEOGEN_STORAGE_BACKEND": "s3", "VIDEOGEN_S3_ENDPOINT_URL": moto_endpoint, "VIDEOGEN_BUCKET": bucket}
    status = subprocess.run([sys.executable, "-m", "videogen.cli", "status", str(job_id), "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert status.returncode == 0, status.stderr
    job = json.loads(status.stdout)
    assert (job["status"], job["error_code"]) == ("failed", "storage_bucket_missing")
    assert_names_the_bucket_and_the_fix(job["error_message"], bucket, moto_endpoint, fake_secret_key)
    assert issubclass(StorageRequestRejectedError, VideogenError)  # recorded as is, not as an internal error
