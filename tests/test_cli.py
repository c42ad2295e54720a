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

    def run(*args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "videogen.cli", *args], env=env, capture_output=True,
                              input=stdin if stdin is not None else b"", timeout=120)

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
    assert JobStore(engine).reads.get(job["id"])["status"] == "pending"


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


def test_db_recount_sets_the_counts_a_load_without_triggers_left_wrong(cli, database_url):
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email) VALUES ('ana', 'ana@example.com'), ('bo', 'bo@example.com')"))
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'counted')"))
        conn.execute(sa.text("ALTER TABLE jobs DISABLE TRIGGER USER"))  # as a restore with --disable-triggers
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) VALUES ('ana', 'x', 'queued'), "
                             "('bo', 'y', 'running'), ('bo', 'z', 'succeeded')"))
        conn.execute(sa.text("ALTER TABLE jobs ENABLE TRIGGER USER"))
    result = cli("db", "recount", "--json")
    assert result.returncode == 0, result.stderr
    assert as_json(result) == {"waiting_before": 1, "waiting": 2, "accounts_corrected": 2}
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT id, active_jobs FROM users")).all()) == {"ana": 2, "bo": 1}
        assert conn.execute(sa.text("SELECT sum(waiting) FROM waiting_jobs_slots")).scalar_one() == 2
    again = cli("db", "recount")
    assert again.returncode == 0
    assert again.stdout.decode().strip() == ("waiting jobs: 2 (the slots said 2); accounts whose active-jobs "
                                             "count was corrected: 0")
    engine.dispose()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The error a person sees: stderr, which must be one readable line (no traceback)."""
    text = result.stderr.decode()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return text.strip()


def test_numbers_in_messages_are_printed_in_full(cli):
    seed = cli("submit", "a cat", "--seed", "9223372036854775808")
    assert seed.returncode == 2
    assert "seed 9223372036854775808 is out of range: allowed 0 to 9223372036854775807" in seed.stdout.decode()
    huge = as_json(cli("submit", "a cat", "--seed", "1e999999999", "--json"))
    assert huge["error_message"] == "seed '1e999999999' is far out of range: it has more than 4000 digits"
    guidance = as_json(cli("submit", "a cat", "--guidance-scale", "20.5", "--json"))
    assert guidance["error_message"] == "guidance_scale 20.5 is out of range: allowed 0 to 20"
    # Integer options are checked against their column's range before any query.
    priority = cli("submit", "a cat", "--priority", "2147483648")
    assert priority.returncode == 2
    assert "argument --priority: 2147483648 is out of range: allowed -2147483648 to 2147483647" in priority.stderr.decode()
    for args in (("status", "99999999999999999999"), ("cancel", "0"), ("list", "--limit", "0"),
                 ("list", "--offset", "-1"), ("list", "--limit", "9" * 5000)):
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr.decode(), args
        assert "is out of range: allowed " in result.stderr.decode() and "e+" not in result.stderr.decode(), args
    assert "allowed 1 to 9223372036854775807" in cli("status", "99999999999999999999").stderr.decode()


def test_prompt_from_a_file_or_standard_input(cli, tmp_path):
    prompt = "a red fox running in snow,\nthen a long shot of the forest"
    path = tmp_path / "prompt.txt"
    path.write_text(prompt + "\n", encoding="utf-8")
    from_file = cli("submit", "--prompt-file", str(path), "--json")
    assert from_file.returncode == 0, from_file.stderr
    job = as_json(from_file)
    assert job["status"] == "pending"
    assert as_json(cli("status", str(job["id"]), "--json"))["prompt"] == prompt  # the final newline is dropped

    piped = cli("submit", "--prompt-file", "-", "--json", stdin=("\ufeff" + prompt + "\r\n").encode())
    assert piped.returncode == 0, piped.stderr
    assert as_json(cli("status", str(as_json(piped)["id"]), "--json"))["prompt"] == prompt


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_10_mb_prompt_gets_the_usual_rejection(cli, tmp_path, source):
    length = 10 * 1024 * 1024
    prompt = ("a red fox running in snow " * (length // 26 + 1))[:length] + "\n"  # the newline is dropped
    if source == "file":
        (tmp_path / "long.txt").write_text(prompt, encoding="utf-8")
        args, stdin = ("submit", "--prompt-file", str(tmp_path / "long.txt")), None
    else:
        args, stdin = ("submit", "--prompt-file", "-"), prompt.encode()
    text = cli(*args, stdin=stdin)
    assert text.returncode == 2 and "Traceback" not in text.stderr.decode()
    assert "rejected: prompt is 10485760 characters; the maximum is 2000" in text.stdout.decode()
    body = as_json(cli(*args, "--json", stdin=stdin))
    assert body["status"] == "rejected" and body["error_code"] == "prompt_too_long"
    assert body["error_message"] == "prompt is 10485760 characters; the maximum is 2000"


def test_a_prompt_file_that_is_not_utf8_or_missing(cli, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("un café au lait".encode("latin-1"))
    for args, stdin in ((("--prompt-file", str(latin1)), None), (("--prompt-file", "-"), latin1.read_bytes())):
        result = cli("submit", *args, "--json", stdin=stdin)
        assert result.returncode == 2
        body = as_json(result)
        assert body["status"] == "rejected" and body["error_code"] == "invalid_encoding"
        assert body["error_message"].startswith("prompt is not valid UTF-8 (byte 0xe9 at offset 6)")

    missing = cli("submit", "--prompt-file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2
    assert one_error_line(missing) == f"error: cannot read the prompt file {str(tmp_path / 'nope.txt')!r}: No such file or directory"
    as_dir = as_json(cli("submit", "--prompt-file", str(tmp_path), "--json"))
    assert as_dir["error_code"] == "prompt_file_unreadable" and "Is a directory" in as_dir["error_message"]


def test_exactly_one_prompt_source(cli, tmp_path):
    neither = cli("submit", "--user", "ana")
    assert neither.returncode == 2
    assert neither.stderr.decode().strip().splitlines()[-1] == (
        "videogen submit: error: the prompt is required: give it as an argument or with --prompt-file PATH "
        "('-' reads standard input)")
    both = cli("submit", "a fox", "--prompt-file", "-", stdin=b"another fox")
    assert both.returncode == 2 and both.stderr.decode().startswith("usage: videogen submit")
    assert "error: give the prompt either as an argument or with --prompt-file, not both" in both.stderr.decode()


def test_a_bad_setting_is_one_line_naming_the_variable_without_the_password(tmp_path):
    env = {**os.environ, "DATABASE_URL": "postgresql://videogen:s3cret-pw@127.0.0.1:1/videogen",
           "VIDEOGEN_HOME": str(tmp_path), "VIDEOGEN_RETRY_DELAYS_S": "soon"}
    result = subprocess.run([sys.executable, "-m", "videogen.cli", "list"], env=env, capture_output=True, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err, err
    assert "VIDEOGEN_RETRY_DELAYS_S" in err and "'5,15,45'" in err and "s3cret-pw" not in err
