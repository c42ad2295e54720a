"""`videogen … --api URL`: the CLI as a client of the HTTP API, with no database credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.api.conftest import REPO


def cli(api, key: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIDEOGEN_API_KEY",)}
    env["DATABASE_URL"] = "postgresql://nobody:wrong@127.0.0.1:1/none"  # proves the database is not used
    if key is not None:
        env["VIDEOGEN_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "videogen.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_submit_status_list_cancel_and_retry_through_the_api(api, user):
    submitted = cli(api, user.key, "submit", "--api", api.url, "--json", "a fox in snow", "--width", "64")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "pending" and job["user_id"] == user.id and job["parameters"]["width"] == 64
    status = cli(api, user.key, "status", "--api", api.url, str(job["id"]), "--events")
    assert status.returncode == 0 and status.stdout.startswith(f"job {job['id']}: pending")
    assert "pending   submit" in status.stdout
    listed = cli(api, user.key, "list", "--api", api.url, "--json")
    assert [j["id"] for j in json.loads(listed.stdout)["items"]][0] == job["id"]
    canceled = cli(api, user.key, "cancel", "--api", api.url, str(job["id"]))
    assert (canceled.returncode, canceled.stdout.strip()) == (0, f"job {job['id']} canceled")
    retried = cli(api, user.key, "retry", "--api", api.url, str(job["id"]))
    assert (retried.returncode, retried.stdout.strip()) == (0, f"job {job['id']} pending")


def test_errors_through_the_api_keep_their_message_and_exit_status(api, user):
    rejected = cli(api, user.key, "submit", "--api", api.url, "a fox", "--width", "63")
    assert (rejected.returncode, rejected.stderr.strip()) == (
        2, "error: width 63 is not allowed: use a multiple of 32 from 32 to 256")
    typed = cli(api, user.key, "submit", "--api", api.url, "a fox", "--width", "wide")
    assert (typed.returncode, typed.stderr.strip()) == (2, "error: width: Input should be a valid integer")
    missing = cli(api, user.key, "status", "--api", api.url, "999999999")
    assert (missing.returncode, missing.stderr.strip()) == (1, "error: job 999999999 does not exist")
    no_key = cli(api, None, "list", "--api", api.url)
    assert (no_key.returncode, no_key.stderr.strip()) == (
        1, "error: --api needs an API key in the environment variable VIDEOGEN_API_KEY")
    bad_key = cli(api, "vg_nope_nope", "list", "--api", api.url, "--json")
    assert bad_key.returncode == 1 and json.loads(bad_key.stdout) == {"error_code": "invalid_api_key",
                                                                      "error_message": "invalid API key"}
    down = cli(api, user.key, "list", "--api", "http://127.0.0.1:1")
    assert down.returncode == 1 and down.stderr.startswith("error: cannot reach the API at http://127.0.0.1:1")


def test_serve_api_on_a_port_in_use_says_so_in_one_line(api):
    port = int(api.url.rsplit(":", 1)[1])  # the test server holds it
    result = cli(api, None, "serve-api", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port} (Address already in use); "
                                     "set VIDEOGEN_API_LISTEN_PORT or --port to a free port")
