"""Shared fixtures: a real PostgreSQL server, started by the test session itself.

The server is the project-local cluster of :mod:`videogen.devtools.local_postgres`, in a temporary
directory and on a free port, unless ``VIDEOGEN_TEST_DATABASE_URL`` points at an existing server (a
superuser URL: the tests create one database per test).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from videogen.config import normalize_database_url
from videogen.db.migrate import upgrade
from videogen.devtools.local_postgres import LocalPostgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres | None]:
    if os.environ.get("VIDEOGEN_TEST_DATABASE_URL"):
        yield None
        return
    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data
    # directory from under a server still used by a concurrent session.
    root = Path(tempfile.mkdtemp(prefix="videogen-test-pg-"))
    server = LocalPostgres(root / "data", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_url(pg_server: LocalPostgres | None) -> str:
    """A URL whose role may create databases."""
    if os.environ.get("VIDEOGEN_TEST_DATABASE_URL"):
        return normalize_database_url(os.environ["VIDEOGEN_TEST_DATABASE_URL"])  # a libpq URL works too
    return pg_server.url("postgres")


_counter = itertools.count()


def create_database(admin_url: str, *, migrate: bool = True) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    if migrate:
        upgrade(url)
    return url


@pytest.fixture
def database_url(admin_url: str) -> str:
    """A fresh, migrated database for one test."""
    return create_database(admin_url)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


# ── the generation service (Ray Serve), once per test run ────────────────────────────────────────
SERVE_TEST_MODELS = ("tiny-b", "tiny-c")  # besides the built-in tiny: for multiplexing and eviction


@pytest.fixture(scope="session")
def serve_app(tmp_path_factory) -> Iterator[dict]:
    """``videogen serve-models`` on a free port: a local Ray instance, the Serve app, one CPU replica
    keeping at most two models loaded; three tiny models registered (tiny, tiny-b, tiny-c)."""
    import json

    from videogen.devtools.processes import session_members, stop_session

    root = tmp_path_factory.mktemp("serve")
    registry = root / "models.json"
    registry.write_text(json.dumps([
        {"name": name, "source": f"{name}-random-weights-v1", "pipeline_class": "LTXPipeline",
         "revision": "random-weights-v1", "offline_builder": "build_tiny_ltx"} for name in SERVE_TEST_MODELS]))
    port = free_port()
    env = {**os.environ, "VIDEOGEN_HOME": str(root / "home"), "VIDEOGEN_MODEL_REGISTRY": str(registry),
           "VIDEOGEN_SERVE_MAX_MODELS_PER_REPLICA": "2", "VIDEOGEN_SERVE_MAX_ONGOING_REQUESTS": "2",
           "VIDEOGEN_DEVICE": "cpu"}
    log_path = root / "serve.log"
    from serving.local import start_in_background

    process, url = start_in_background(port, log_path, env=env)
    try:
        yield {"url": url, "process": process, "registry": str(registry), "log": log_path, "env": env}
    finally:
        # A graceful stop (SIGTERM) ends Serve, Ray and every agent Ray leaves behind by itself.
        killed = stop_session(process, grace_s=60)
        assert killed == [], f"serve-models left processes {killed} that needed SIGKILL; see {log_path}"
        assert session_members(process.pid) == []
