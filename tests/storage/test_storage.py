"""Storage contract, run against the local folder and against S3 over real HTTP (moto's server)."""

from __future__ import annotations

import http.server
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.config import Config

from videogen.config import Settings
from videogen.encoding import (
    build_metadata,
    current_code_version,
    encode_video,
    output_digests,
    write_metadata,
    write_thumbnails,
)
from videogen.errors import StorageUnavailableError, StorageVerificationError
from videogen.storage import (
    MANIFEST_NAME,
    LocalObjectStorage,
    S3ObjectStorage,
    StorageRequestRejectedError,
    file_digest,
    job_key,
    job_prefix,
    storage_from_settings,
    upload_job_outputs,
)
from videogen.storage.local import INCOMING_PREFIX


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.fixture
def payload(tmp_path) -> Path:
    return write_random(tmp_path / "payload.bin", 300_000)


# -- the contract, on both backends ---------------------------------------------------------------


def test_put_file_stores_exactly_the_file(storage, payload):
    key = job_key(7, "video.mp4")
    stored = storage.put_file(key, payload, "video/mp4")

    digest = file_digest(payload)
    assert (stored.key, stored.size, stored.sha256) == (key, digest.size, digest.sha256)
    assert stored.uri == storage.uri_for(key)
    assert storage.exists(key)
    assert storage.read_bytes(key) == payload.read_bytes()
    assert storage.list_prefix(job_prefix(7)) == [key]


def test_put_file_replaces_an_existing_object(storage, tmp_path):
    key = job_key(7, "metadata.json")
    storage.put_file(key, write_random(tmp_path / "one", 100, seed=1), "application/json")
    second = storage.put_file(key, write_random(tmp_path / "two", 50, seed=2), "application/json")
    assert storage.read_bytes(key) == (tmp_path / "two").read_bytes()
    assert second.size == 50 and storage.list_prefix(job_prefix(7)) == [key]


def test_presigned_url_downloads_the_exact_bytes(storage, payload, download):
    key = job_key(8, "video.mp4")
    storage.put_file(key, payload, "video/mp4")
    url = storage.presigned_url(key, expires_s=300)
    assert download(url) == payload.read_bytes()


class Tampering:
    """Another writer replaces the object between our write and the read-back."""

    def _write_object(self, key, path, expected, content_type):
        super()._write_object(key, path, expected, content_type)
        impostor = path.with_name(path.name + ".impostor")
        impostor.write_bytes(b"not the bytes that were sent")
        super()._write_object(key, impostor, file_digest(impostor), content_type)


def test_an_upload_that_does_not_verify_is_removed(storage_factory, payload):
    storage = storage_factory(mixin=Tampering)
    key = job_key(9, "video.mp4")
    with pytest.raises(StorageVerificationError, match="did not verify") as failure:
        storage.put_file(key, payload, "video/mp4")
    assert file_digest(payload).sha256 in str(failure.value)
    assert not storage.exists(key)
    assert storage.list_prefix(job_prefix(9)) == []


def test_delete_prefix_removes_exactly_that_jobs_objects(storage, payload):
    for job_id in (1, 12, 2):
        for name in ("video.mp4", "thumb_first.png"):
            storage.put_file(job_key(job_id, name), payload, "application/octet-stream")

    assert storage.delete_prefix(job_prefix(1)) == 2

    assert storage.list_prefix(job_prefix(1)) == []
    assert storage.list_prefix("videos/") == [
        "videos/12/thumb_first.png",
        "videos/12/video.mp4",
        "videos/2/thumb_first.png",
        "videos/2/video.mp4",
    ]
    assert storage.delete_prefix(job_prefix(1)) == 0


def test_absent_objects(storage):
    key = job_key(3, "video.mp4")
    assert not storage.exists(key)
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(key)
    storage.delete(key)  # deleting nothing is fine
    assert storage.list_prefix(job_prefix(3)) == []


@pytest.mark.parametrize("key", ["", "/videos/1/a", "videos//a", "videos/../etc/passwd", "videos/./a", "a\\b", "a\nb"])
def test_unsafe_keys_are_refused(storage, payload, key):
    with pytest.raises(ValueError, match="key"):
        storage.put_file(key, payload)


def test_dangerous_arguments_are_refused(storage, payload):
    with pytest.raises(ValueError, match="empty prefix"):
        storage.delete_prefix("")
    with pytest.raises(ValueError, match="expires_s"):
        storage.presigned_url(job_key(1, "video.mp4"), expires_s=0)
    with pytest.raises(FileNotFoundError):
        storage.put_file(job_key(1, "video.mp4"), payload.with_name("absent"))


# -- job outputs -----------------------------------------------------------------------------------


def job_files(directory: Path, *, tamper_manifest: bool = False) -> dict[str, Path]:
    """A job's outputs as the pipeline writes them: video, thumbnails, then metadata listing them."""
    files = {
        "video.mp4": write_random(directory / "video.mp4", 20_000, seed=1),
        "thumb_first.png": write_random(directory / "thumb_first.png", 700, seed=2),
        "thumb_middle.png": write_random(directory / "thumb_middle.png", 700, seed=3),
        "thumb_last.png": write_random(directory / "thumb_last.png", 700, seed=4),
    }
    outputs = {name: {"size": file_digest(path).size, "sha256": file_digest(path).sha256} for name, path in files.items()}
    if tamper_manifest:
        outputs["video.mp4"]["sha256"] = "0" * 64
    manifest = directory / "metadata.json"
    manifest.write_text(json.dumps({"job_id": "5", "outputs": outputs}))
    return {"metadata.json": manifest, **files}  # manifest first on purpose: order must not matter


class Recording:
    def _write_object(self, key, path, expected, content_type):
        self.written = [*getattr(self, "written", []), (key, content_type)]
        super()._write_object(key, path, expected, content_type)


class FailingOnMiddleThumbnail:
    def _write_object(self, key, path, expected, content_type):
        if key.endswith("thumb_middle.png"):
            raise StorageUnavailableError("simulated outage")
        super()._write_object(key, path, expected, content_type)


def test_job_outputs_are_uploaded_with_the_manifest_last(storage_factory, tmp_path):
    storage = storage_factory(mixin=Recording)
    files = job_files(tmp_path)

    stored = upload_job_outputs(storage, 5, files)

    assert list(stored) == list(files)
    assert [key for key, _ in storage.written][-1] == "videos/5/metadata.json"
    assert dict(storage.written)["videos/5/video.mp4"] == "video/mp4"
    assert dict(storage.written)["videos/5/thumb_first.png"] == "image/png"
    assert dict(storage.written)["videos/5/metadata.json"] == "application/json"
    assert storage.list_prefix(job_prefix(5)) == sorted(f"videos/5/{name}" for name in files)
    for name, obj in stored.items():
        assert obj.sha256 == file_digest(files[name]).sha256
    assert storage.exists(job_key(5, MANIFEST_NAME))


def test_a_failed_upload_leaves_no_manifest_and_no_orphans(storage_factory, tmp_path):
    files = job_files(tmp_path)
    upload_job_outputs(storage_factory(), 5, files)  # an earlier, successful attempt
    storage = storage_factory(mixin=FailingOnMiddleThumbnail)

    with pytest.raises(StorageUnavailableError, match="simulated outage"):
        upload_job_outputs(storage, 5, files)

    assert not storage.exists(job_key(5, MANIFEST_NAME)), "a stale manifest still vouches for replaced objects"
    assert storage.list_prefix(job_prefix(5)) == []


def test_a_manifest_that_disagrees_with_the_uploads_is_not_uploaded(storage, tmp_path):
    with pytest.raises(ValueError, match="lists 'video.mp4'"):
        upload_job_outputs(storage, 6, job_files(tmp_path, tamper_manifest=True))
    assert storage.list_prefix(job_prefix(6)) == []
    files = job_files(tmp_path)
    files["extra.bin"] = write_random(tmp_path / "extra.bin", 10)  # uploaded but not in the manifest
    with pytest.raises(ValueError, match="lists the outputs"):
        upload_job_outputs(storage, 6, files)
    assert storage.list_prefix(job_prefix(6)) == []


def test_job_outputs_need_a_manifest_and_existing_files(storage, tmp_path):
    files = job_files(tmp_path)
    with pytest.raises(ValueError, match="must include 'metadata.json'"):
        upload_job_outputs(storage, 6, {"video.mp4": files["video.mp4"]})
    with pytest.raises(FileNotFoundError, match="missing"):
        upload_job_outputs(storage, 6, {**files, "thumb_last.png": tmp_path / "absent.png"})
    assert storage.list_prefix(job_prefix(6)) == []


def test_a_real_jobs_outputs_round_trip(storage, tmp_path, download):
    """Encoder, thumbnails and metadata as the pipeline chains them, then the verified upload."""
    frames = np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    encoded = encode_video(frames, fps=8, output_path=tmp_path / "video.mp4")
    files = {"video.mp4": encoded.path, **write_thumbnails(frames, tmp_path).files()}
    metadata = build_metadata(
        job_id=77, prompt="a red fox running in snow", negative_prompt="",
        parameters={"width": 64, "height": 64, "num_frames": 9, "fps": 8}, model_name="tiny",
        model_revision="random-weights-v1", seed=3, outputs=output_digests(files),
        code_version=current_code_version({}), created_at=datetime.now(timezone.utc),
        encoding=encoded.settings.to_dict(),
    )  # fmt: skip
    manifest = write_metadata(tmp_path / "metadata.json", metadata)

    stored = upload_job_outputs(storage, 77, {**files, "metadata.json": manifest})

    listed = json.loads(storage.read_bytes(job_key(77, "metadata.json")))["outputs"]
    assert listed == {name: {"size": obj.size, "sha256": obj.sha256} for name, obj in stored.items() if name in files}
    assert download(storage.presigned_url(stored["video.mp4"].key, expires_s=60)) == encoded.path.read_bytes()


@pytest.mark.parametrize("job_id", ["", "1/2", "../1", True, 1.5])
def test_job_ids_are_checked(job_id):
    with pytest.raises(ValueError, match="invalid job id"):
        job_prefix(job_id)


# -- S3 specifics ----------------------------------------------------------------------------------


def test_s3_object_carries_its_checksum(s3_storage, moto_endpoint, payload):
    key = job_key(11, "video.mp4")
    stored = s3_storage.put_file(key, payload, "video/mp4")

    client = boto3.client("s3", endpoint_url=moto_endpoint, config=Config(s3={"addressing_style": "path"}))
    head = client.head_object(Bucket=s3_storage.bucket, Key=key, ChecksumMode="ENABLED")
    digest = file_digest(payload)
    assert head["ContentLength"] == digest.size
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"]["sha256"] == digest.sha256
    assert head["ChecksumSHA256"] == digest.sha256_base64
    assert stored.uri == f"s3://{s3_storage.bucket}/{key}"


def test_s3_presigned_url_expires(s3_storage, payload):
    key = job_key(11, "video.mp4")
    s3_storage.put_file(key, payload, "video/mp4")
    assert "X-Amz-Expires=120" in s3_storage.presigned_url(key, expires_s=120)


def assert_fast_and_named(failure, started: float, endpoint: str, secret: str, limit_s: float = 5.0) -> None:
    assert time.monotonic() - started < limit_s, "the failure was not bounded by the timeouts"
    assert endpoint in str(failure.value)
    assert secret not in str(failure.value)


def test_s3_down_is_unavailable_quickly(dead_endpoint, fake_secret_key, payload):
    endpoint = dead_endpoint
    # Production defaults except the connect timeout: botocore's one retry included.
    storage = S3ObjectStorage(endpoint_url=endpoint, bucket="jobs-outputs", connect_timeout_s=1.0)
    for operation in (
        lambda: storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4"),
        lambda: storage.exists(job_key(1, "video.mp4")),
        lambda: storage.delete_prefix(job_prefix(1)),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match="unreachable") as failure:
            operation()
        assert_fast_and_named(failure, started, endpoint, fake_secret_key)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel does the handshake) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_s3_hanging_is_unavailable_after_the_read_timeout(silent_server, fake_secret_key, payload):
    storage = S3ObjectStorage(endpoint_url=silent_server, bucket="jobs-outputs", read_timeout_s=0.5, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="Timeout") as failure:
        storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4")
    assert_fast_and_named(failure, started, silent_server, fake_secret_key)


def s3_error_server(status: int, code: str) -> http.server.ThreadingHTTPServer:
    """An HTTP server that answers every request with an S3 error document."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # answers botocore's "Expect: 100-continue" at once

        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # read the upload first
            body = f"<Error><Code>{code}</Code><Message>simulated {code}</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.mark.parametrize(
    ("status", "code", "error", "message"),
    [
        (503, "SlowDown", StorageUnavailableError, "HTTP 503 SlowDown"),
        (500, "InternalError", StorageUnavailableError, "HTTP 500 InternalError"),
        (400, "BadDigest", StorageVerificationError, "HTTP 400 BadDigest"),
        (403, "AccessDenied", StorageRequestRejectedError, "HTTP 403 AccessDenied"),
    ],
)
def test_s3_error_answers_are_classified(fake_secret_key, payload, status, code, error, message):
    server = s3_error_server(status, code)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        storage = S3ObjectStorage(endpoint_url=endpoint, bucket="jobs-outputs", max_attempts=1)
        started = time.monotonic()
        with pytest.raises(error, match=message) as failure:
            storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4")
        assert_fast_and_named(failure, started, endpoint, fake_secret_key)
    finally:
        server.shutdown()
        server.server_close()


def test_s3_missing_bucket_is_a_configuration_error(s3_factory, payload):
    storage = s3_factory(create_bucket=False)
    with pytest.raises(StorageRequestRejectedError, match="NoSuchBucket"):
        storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4")


def test_s3_without_credentials_says_what_to_set(s3_factory, payload, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = s3_factory()
    with pytest.raises(StorageRequestRejectedError, match="AWS_ACCESS_KEY_ID"):
        storage.put_file(job_key(1, "video.mp4"), payload, "video/mp4")


def test_credentials_in_the_endpoint_url_are_not_repeated(aws_test_environment):
    storage = S3ObjectStorage(endpoint_url="http://user:hunter2@127.0.0.1:9/", bucket="jobs-outputs")
    assert "hunter2" not in storage.endpoint_url and "hunter2" not in repr(storage)


# -- local specifics -------------------------------------------------------------------------------


def test_local_layout_and_uri(tmp_path, payload):
    storage = LocalObjectStorage(root=tmp_path / "root", bucket="jobs-outputs")
    stored = storage.put_file(job_key(4, "video.mp4"), payload, "video/mp4")
    expected_path = tmp_path / "root" / "jobs-outputs" / "videos" / "4" / "video.mp4"
    assert expected_path.read_bytes() == payload.read_bytes()
    assert stored.uri == expected_path.as_uri()
    assert storage.presigned_url(stored.key, expires_s=60) == stored.uri


def test_local_failed_write_leaves_no_partial_file(tmp_path, payload):
    storage = LocalObjectStorage(root=tmp_path, bucket="jobs-outputs")
    storage.put_file("videos/4/video.mp4", payload, "video/mp4")
    # "videos/4" is a directory now, so the final rename onto it fails after the copy.
    with pytest.raises(StorageUnavailableError, match="could not store videos/4"):
        storage.put_file("videos/4", payload, "video/mp4")
    leftovers = [p.name for p in (tmp_path / "jobs-outputs").rglob("*") if p.name.startswith(INCOMING_PREFIX)]
    assert leftovers == []


def test_local_reserved_names_and_cleanup(tmp_path, payload):
    storage = LocalObjectStorage(root=tmp_path, bucket="jobs-outputs")
    with pytest.raises(ValueError, match="reserved"):
        storage.put_file(f"videos/1/{INCOMING_PREFIX}x", payload)
    storage.put_file("videos/1/video.mp4", payload)
    (tmp_path / "jobs-outputs" / "videos" / "1" / f"{INCOMING_PREFIX}abc").write_bytes(b"in flight")
    assert storage.list_prefix("videos/") == ["videos/1/video.mp4"]  # in-flight files are invisible
    (tmp_path / "jobs-outputs" / "videos" / "1" / f"{INCOMING_PREFIX}abc").unlink()
    storage.delete_prefix(job_prefix(1))
    assert not (tmp_path / "jobs-outputs" / "videos" / "1").exists(), "empty job directory left behind"


# -- factory and import cost -----------------------------------------------------------------------


def test_factory_builds_the_configured_backend(tmp_path, aws_test_environment):
    local = storage_from_settings(Settings(storage_backend="local", storage_root=tmp_path, bucket="jobs-outputs"))
    assert isinstance(local, LocalObjectStorage) and local.bucket_dir == tmp_path.resolve() / "jobs-outputs"
    s3 = storage_from_settings(
        Settings(storage_backend="s3", s3_endpoint_url="http://127.0.0.1:9000", s3_region="eu-west-3")
    )
    assert isinstance(s3, S3ObjectStorage) and s3.bucket == "jobs-outputs"
    assert s3.endpoint_url.startswith("http://127.0.0.1:9000") and s3.region == "eu-west-3"
    with pytest.raises(ValueError, match="VIDEOGEN_STORAGE_BACKEND: Input should be 'local' or 's3', got 'gcs'"):
        Settings(storage_backend="gcs")


def test_importing_storage_and_encoding_stays_light():
    code = (
        "import sys, videogen.storage, videogen.encoding; "
        "heavy = [m for m in ('boto3', 'botocore', 'ffmpeg', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
