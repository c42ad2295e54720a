"""The `videogen` command line, run as a real subprocess against real PostgreSQL."""

import json
import os
import subprocess
import sys

import pytest

from videogen.lifecycle import JobStore


@pytest.fixture
def cli(database_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "VIDEOGEN_HOME": str(tmp_path)}

    def run(*args: str | bytes) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "videogen.cli", *args], env=env, capture_output=True, timeout=120)

    return run


def as_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout)


def test_submit_status_list_cancel_retry(cli, engine):
    submitted = cli("submit", "a red fox running in snow", "--user", "ana", "--width", "96", "--num-frames", "17",
                    "--idempotency-key", "k-1", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job = as_json(submitted)
    assert job["status"] == "pending" and job["created"] is True
    again = as_json(cli("submit", "a red fox running in snow", "--user", "ana", "--idempotency-key", "k-1", "--json"))
    assert again["id"] == job["id"] and again["created"] is False

    status = as_json(cli("status", str(job["id"]), "--events", "--json"))
    assert (status["status"], status["width"], status["num_frames"]) == ("pending", "96", "17")
    assert status["events"][0]["stage"] == "submit" and status["download_url"] is None
    text = cli("status", str(job["id"])).stdout.decode()
    assert f"job {job['id']}: pending" in text

    cli("submit", "another", "--user", "bob", "--json")
    listed = as_json(cli("list", "--user", "ana", "--json"))
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    page = as_json(cli("list", "--limit", "1", "--offset", "1", "--json"))
    assert len(page["jobs"]) == 1 and page["jobs"][0]["id"] == job["id"]
    assert as_json(cli("list", "--status", "canceled", "--json"))["jobs"] == []

    assert as_json(cli("cancel", str(job["id"]), "--json"))["status"] == "canceled"
    refused = cli("cancel", str(job["id"]), "--json")
    assert refused.returncode == 1 and "only pending, queued or running" in as_json(refused)["error_message"]
    assert as_json(cli("retry", str(job["id"]), "--json")) == {"id": job["id"], "status": "pending", "submission": 1}
    assert JobStore(engine).get(job["id"])["status"] == "pending"


@pytest.mark.parametrize("prompt,message", [
    ("", "prompt is empty"),
    ("   ", "prompt is empty"),
    ("x" * 2001, "2001 characters; the maximum is 2000"),
    ("bell\x07", "control character U+0007"),
    (b"caf\xe9", "not valid UTF-8"),
])
def test_bad_prompts_are_rejected_with_their_message(cli, prompt, message):
    result = cli("submit", prompt, "--json")
    assert result.returncode == 2
    body = as_json(result)
    assert body["status"] == "rejected" and message in body["error_message"]
    text = cli("submit", prompt)
    assert text.returncode == 2 and message in text.stdout.decode()


def test_bad_parameters_and_unknown_jobs(cli):
    bad = cli("submit", "a fox", "--fps", "500", "--json")
    assert bad.returncode == 2 and "fps 500 is out of range" in as_json(bad)["error_message"]
    missing = cli("status", "424242")
    assert missing.returncode == 1 and b"job 424242 does not exist" in missing.stderr
    since = cli("list", "--since", "yesterday")
    assert since.returncode == 2 and b"not a date: 'yesterday'" in since.stderr


def test_database_down_is_one_readable_line(cli, tmp_path):
    env_url = "postgresql://videogen:videogen@127.0.0.1:1/videogen"
    result = subprocess.run([sys.executable, "-m", "videogen.cli", "list"], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": env_url}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the database") and "Traceback" not in result.stderr


def test_db_upgrade_is_idempotent(cli):
    result = cli("db", "upgrade", "--json")
    assert result.returncode == 0 and as_json(result) == {"upgraded_to": "head"}
