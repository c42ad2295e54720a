"""A real ``videogen serve-api`` (uvicorn) on a free port, over a fresh migrated database, hit over
HTTP with httpx. One server per test module; accounts are made through the core library."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import create_database, free_port
from tests.waiting import wait_until
from videogen.accounts.credits import CreditLedger
from videogen.accounts.keys import ApiKeys
from videogen.accounts.users import Users
from videogen.devtools.processes import start_in_new_session, stop_session

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@dataclass
class ApiServer:
    url: str
    database_url: str
    engine: sa.Engine
    jwt_secret: str
    log: Path
    home: Path

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_api(database_url: str, work: Path, *, jwt_secret: str, extra_env: dict[str, str] | None = None,
              args: tuple[str, ...] = ()):
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"api-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOGEN_API_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"DATABASE_URL": database_url, "VIDEOGEN_HOME": str(work / "home"),
                "VIDEOGEN_STORAGE_ROOT": str(work / "storage"), "VIDEOGEN_API_JWT_SECRET": jwt_secret,
                "VIDEOGEN_API_RATE_LIMIT_PER_S": "1000", "VIDEOGEN_API_AUTH_ATTEMPTS_PER_MIN": "1000",
                **(extra_env or {})})
    with open(log, "wb") as out:
        process = start_in_new_session([sys.executable, "-m", "videogen.cli", "serve-api", "--port", str(port), *args],
                                       log=out, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve-api exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "serve-api to answer /health", poll_s=0.2)
    return process, url, log


@contextlib.contextmanager
def another_api(api: "ApiServer", work: Path, **env: str) -> Iterator[str]:
    """A second serve-api over the same database and signing key, with other settings; its URL."""
    process, url, _ = start_api(api.database_url, work, jwt_secret=api.jwt_secret, extra_env=env)
    try:
        yield url
    finally:
        stop_session(process, grace_s=20)


@pytest.fixture(scope="module")
def api(admin_url: str, tmp_path_factory) -> Iterator[ApiServer]:
    database_url = create_database(admin_url)
    work = tmp_path_factory.mktemp("api")
    secret = secrets.token_hex(32)
    process, url, log = start_api(database_url, work, jwt_secret=secret)
    engine = sa.create_engine(database_url)
    try:
        yield ApiServer(url, database_url, engine, secret, log, work)
    finally:
        stop_session(process, grace_s=20)
        engine.dispose()


@dataclass
class Account:
    id: str
    email: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


def make_account(api: ApiServer, role: str = "user", credits: str | None = "100") -> Account:
    users = Users(api.engine)
    user = users.create(f"{role}-{secrets.token_hex(4)}@example.com", PASSWORD, role=role)
    if credits:
        CreditLedger(api.engine).grant(user["id"], credits, by="test")
    key = ApiKeys(api.engine).create(user["id"], "tests").key
    return Account(user["id"], user["email"], key)


@pytest.fixture
def user(api: ApiServer) -> Account:
    return make_account(api)


@pytest.fixture
def admin(api: ApiServer) -> Account:
    return make_account(api, "admin", None)


@pytest.fixture
def support(api: ApiServer) -> Account:
    return make_account(api, "support", None)
