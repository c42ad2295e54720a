"""Storage fixtures: a real S3 API over HTTP (moto's server, in a subprocess) and both backends.

The moto server is started once per session on 127.0.0.1 and a free port; readiness is polled (no
fixed sleep); it is terminated at teardown. Fake credentials are set for the whole session, and the
AWS config files are pointed away so a developer's real profile is never read or used.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from videogen.storage import LocalObjectStorage, ObjectStorage, S3ObjectStorage

# A secret that must never show up in an error message; the tests grep for it.
FAKE_SECRET_KEY = "fake-secret-key-do-not-print-4f1c"
MOTO_START_TIMEOUT_S = 60.0  # generous: the CI machine is shared and moto imports a lot


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def aws_test_environment(tmp_path_factory) -> Iterator[None]:
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing-access-key")
        patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", str(nowhere))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        # No proxy between the tests and the local servers (boto3 and requests both honour these).
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_test_environment, tmp_path_factory) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server running in a child process."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(server, endpoint, log_path)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(server: subprocess.Popen, endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + MOTO_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)  # poll interval, not a guess at the start-up time
    raise RuntimeError(f"moto server not serving {endpoint} after {MOTO_START_TIMEOUT_S}s:\n{log_path.read_text()}")


def make_s3_storage(endpoint: str, **options) -> S3ObjectStorage:
    """An S3 storage on a fresh bucket, so tests never see each other's objects."""
    return _with_mixin(S3ObjectStorage, options.pop("mixin", None))(
        endpoint_url=endpoint,
        region="us-east-1",
        bucket=options.pop("bucket", f"test-{uuid.uuid4().hex[:12]}"),
        create_bucket=options.pop("create_bucket", True),
        connect_timeout_s=options.pop("connect_timeout_s", 2.0),
        read_timeout_s=options.pop("read_timeout_s", 10.0),
        **options,
    )


def _with_mixin(backend: type[ObjectStorage], mixin: type | None) -> type[ObjectStorage]:
    """``backend``, or a subclass that puts ``mixin`` first (tests hook uploads through it)."""
    if mixin is None:
        return backend
    return type(f"{mixin.__name__}{backend.__name__}", (mixin, backend), {})


@pytest.fixture(params=["local", "s3"])
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def storage_factory(backend_name, request, tmp_path):
    """``factory(mixin=None)`` -> a storage of the parametrized backend on an empty bucket.
    A mixin overrides primitives (``_write_object``...) to tamper with or observe uploads."""

    def factory(mixin: type | None = None) -> ObjectStorage:
        if backend_name == "local":
            return _with_mixin(LocalObjectStorage, mixin)(root=tmp_path / "storage", bucket="jobs-outputs")
        # create_bucket=True: the bucket appears on first use, as with a fresh MinIO.
        return make_s3_storage(request.getfixturevalue("moto_endpoint"), mixin=mixin)

    return factory


@pytest.fixture
def storage(storage_factory) -> ObjectStorage:
    return storage_factory()


@pytest.fixture
def s3_factory(moto_endpoint):
    """``factory(**options)`` -> an S3ObjectStorage on moto with a fresh bucket name."""
    return lambda **options: make_s3_storage(moto_endpoint, **options)


@pytest.fixture
def s3_storage(s3_factory) -> S3ObjectStorage:
    return s3_factory()


@pytest.fixture
def fake_secret_key(aws_test_environment) -> str:
    """The secret access key the session uses: no error message may contain it."""
    return FAKE_SECRET_KEY


@pytest.fixture
def dead_endpoint(aws_test_environment) -> str:
    """An endpoint URL on a free port where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def download():
    """``download(url)`` -> the bytes behind a presigned URL, fetched like a client would."""
    return read_url


def read_url(url: str) -> bytes:
    """Fetch a download link the way a client would: HTTP(S) with requests, file:// by path."""
    if url.startswith("file://"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        return Path(url2pathname(urlsplit(url).path)).read_bytes()
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.content

