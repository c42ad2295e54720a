"""End to end through the real Dagster daemon (sensor → queued run coordinator → run launcher → ops).

The daemon runs as a subprocess on PostgreSQL storage with the project's own dagster_home/dagster.yaml;
rows are inserted straight into `jobs`; videos are checked with ffprobe.
"""

import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.waiting import wait_until
from tests.conftest import create_database
from tests.trail import assert_trail_in_lifecycle_order
from videogen.config import load_settings
from videogen.devtools.processes import session_members, start_in_new_session, stop_session
from videogen.encoding.probe import probe_video
from videogen.lifecycle import JobStore

REPO = Path(__file__).resolve().parents[1]
FINAL = {"succeeded", "failed", "rejected", "canceled"}


def daemon_env(admin_url: str, tmp_path: Path, serve_url: str) -> dict[str, str]:
    """A daemon's environment: its own app database, Dagster database, DAGSTER_HOME and bucket folder;
    generation goes to the test run's Ray Serve app."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DATABASE_URL": create_database(admin_url),
        "DAGSTER_PG_URL": create_database(admin_url, migrate=False),
        "DAGSTER_HOME": str(home),
        "VIDEOGEN_HOME": str(tmp_path / "videogen"),
        "VIDEOGEN_RETRY_DELAYS_S": "1,1,1",
        "VIDEOGEN_HEARTBEAT_TIMEOUT_S": "12",
        "VIDEOGEN_SERVE_URL": serve_url,
        # The webhook test's receiver listens on 127.0.0.1.
        "VIDEOGEN_WEBHOOK_ALLOW_PRIVATE": "1",
    }


@contextlib.contextmanager
def running_daemon(env: dict[str, str], log_path: Path):
    """``dagster-daemon run`` in its own session (the daemon, its code server and every run worker are
    in it); stopped, with every process of that session, on the way out."""
    log = open(log_path, "wb")
    daemon = start_in_new_session(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "--log-format", "json", "-w", str(REPO / "workspace.yaml")],
        log=log, cwd=REPO, env=env, nice=load_settings(env).orchestration_nice,  # as the main job starts it
    )
    try:
        yield daemon
    finally:
        stop_session(daemon, grace_s=60)
        assert session_members(daemon.pid) == []
        log.close()


@pytest.fixture
def platform(admin_url, tmp_path, serve_app):
    """A running daemon over a fresh app database, generating through the test run's Serve app."""
    env = daemon_env(admin_url, tmp_path, serve_app["url"])
    engine = sa.create_engine(env["DATABASE_URL"])
    try:
        with running_daemon(env, tmp_path / "daemon.log") as daemon:
            yield {"env": env, "store": JobStore(engine), "engine": engine, "daemon": daemon,
                   "log": tmp_path / "daemon.log"}
    finally:
        engine.dispose()


def insert(engine, **columns) -> int:
    names = ", ".join(columns)
    params = ", ".join(f":{k}" for k in columns)
    with engine.begin() as conn:
        return conn.execute(sa.text(f"INSERT INTO jobs ({names}) VALUES ({params}) RETURNING id"), columns).scalar()


def final_statuses(store, ids):
    rows = {i: store.reads.get(i) for i in ids}
    return rows if all(r["status"] in FINAL for r in rows.values()) else None


def test_rows_become_verified_videos(platform):
    engine, store = platform["engine"], platform["store"]
    bad_model = insert(engine, user_id="sql", prompt="a fox", model="no-such-model")
    wide = insert(engine, user_id="ana", prompt="waves on a shore", width="96", height="64", num_frames="17", fps="12")
    bad_type = insert(engine, user_id="sql", prompt="a fox", width="wide")
    default = insert(engine, user_id="bob", prompt="a red fox running in snow")
    ids = [bad_model, wide, bad_type, default]
    rows = wait_until(lambda: final_statuses(store, ids), 600, f"jobs {ids} to finish; see {platform['log']}")

    assert rows[bad_model]["status"] == "rejected" and rows[bad_model]["error_code"] == "unknown_model"
    assert rows[bad_type]["status"] == "rejected" and "width must be a whole number" in rows[bad_type]["error_message"]
    home = Path(platform["env"]["VIDEOGEN_HOME"])
    for job_id, (width, height, frames, fps) in ((wide, (96, 64, 17, 12)), (default, (64, 64, 9, 8))):
        row = rows[job_id]
        assert row["status"] == "succeeded", row["error_message"]
        video = home / "storage" / "jobs-outputs" / "videos" / str(job_id) / "video.mp4"
        assert row["output_uri"] == video.as_uri()
        facts = probe_video(video)
        assert (facts.codec, facts.width, facts.height, facts.frame_count) == ("h264", width, height, frames)
        assert facts.fps == pytest.approx(fps) and facts.pix_fmt == "yuv420p"
        assert facts.duration_s == pytest.approx(frames / fps, abs=0.01)
        assert row["output_size_bytes"] == video.stat().st_size
        assert (video.parent / "metadata.json").exists() and (video.parent / "thumb_middle.png").exists()
        events = store.reads.events(job_id)
        stages = [e["stage"] for e in events]
        assert stages[:3] == ["submit", "queue", "validate"] and stages[-1] == "done"
        assert {"generate", "encode", "qa", "upload"} <= set(stages)
        assert row["gpu_seconds"] > 0 and float(row["credits"]) > 0 and row["attempts"] == 1
    for job_id in ids:
        assert_trail_in_lifecycle_order(store.reads.events(job_id), rows[job_id])


def test_a_storyboard_row_becomes_a_film_through_the_daemon_and_serve(platform):
    """SQL row with a storyboard → sensor → generate_film run (scenes through the Serve app) → one MP4
    with sound and chapters, its SRT, and the QA gates passed."""
    import json as json_module
    import subprocess

    engine, store = platform["engine"], platform["store"]
    board = {"scenes": [{"prompt": "a red fox wakes", "duration_s": 1, "narration": "The fox wakes.",
                         "transition": "crossfade"},
                        {"prompt": "a red fox running in snow", "duration_s": 1.5}],
             "music": "generated", "subtitles": "sidecar"}
    film = insert(engine, user_id="ana", prompt="the fox's morning", seed="5", storyboard=json_module.dumps(board))
    rows = wait_until(lambda: final_statuses(store, [film]), 600, f"film {film} to finish; see {platform['log']}")
    row = rows[film]
    assert row["status"] == "succeeded", row["error_message"]
    folder = Path(platform["env"]["VIDEOGEN_HOME"]) / "storage" / "jobs-outputs" / "videos" / str(film)
    facts = json_module.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_chapters", "-of", "json", str(folder / "video.mp4")],
        capture_output=True, check=True).stdout)
    assert {s["codec_type"] for s in facts["streams"]} >= {"video", "audio"} and len(facts["chapters"]) == 2
    assert "The fox wakes." in (folder / "subtitles.srt").read_text()
    metadata = json_module.loads((folder / "metadata.json").read_text())
    assert metadata["quality"]["passed"] and [s["from_cache"] for s in metadata["film"]["scenes"]] == [False, False]
    events = [e["message"] for e in store.reads.events(film)]
    assert "scene 1 of 2 ready, generated" in " ".join(events) and row["run_id"]
    assert_trail_in_lifecycle_order(store.reads.events(film), row)


def test_a_killed_worker_does_not_leave_the_job_running(platform):
    engine, store = platform["engine"], platform["store"]
    # Enough denoising steps that the worker is certainly still generating when it is killed.
    job_id = insert(engine, user_id="ana", prompt="a slow fox", steps="100", width="128", height="128", num_frames="25")
    row = wait_until(lambda: (r := store.reads.get(job_id))["stage"] == "generate" and r["progress"] > 0 and r,
                     600, "the job to be generating")
    row = wait_until(lambda: (r := store.reads.get(job_id))["worker"] and r, 60, "the worker's first heartbeat")
    os.kill(int(row["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    # The heartbeat goes stale → resubmitted under a new run key → eventually not running any more.
    # (Or the run launcher noticed first and Dagster marked the run failed: same outcome.)
    wait_until(lambda: store.reads.get(job_id)["submission"] == 1, 300,
               f"the reconciliation sensor to notice the dead worker; see {platform['log']}")
    lost = [e["message"] for e in store.reads.events(job_id) if "resubmitted" in (e["message"] or "")]
    assert len(lost) == 1 and ("stopped sending heartbeats" in lost[0] or "without reporting" in lost[0])
    store.operator.cancel(job_id)  # no need to wait for 100 more steps; cancel must stop the new run too
    wait_until(lambda: store.reads.get(job_id)["stage"] == "canceled", 120, "the cancel to reach the run")
    row = store.reads.get(job_id)
    assert row["status"] == "canceled" and row["submission"] == 1


def test_a_crashed_daemon_leaves_no_process_behind(platform):
    """A SIGKILLed daemon orphans its code server and run worker (they wait for the run to finish);
    stopping the daemon's session still reaches and ends every one of them."""
    engine, store, daemon = platform["engine"], platform["store"], platform["daemon"]
    job_id = insert(engine, user_id="ana", prompt="a slow fox", steps="100", width="128", height="128", num_frames="25")
    row = wait_until(lambda: (r := store.reads.get(job_id))["stage"] == "generate" and r["worker"] and r,
                     600, f"the job to be generating; see {platform['log']}")
    worker_pid = int(row["worker"].rsplit(":", 1)[1])
    assert worker_pid in session_members(daemon.pid)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    assert worker_pid in session_members(daemon.pid)  # orphaned, still generating
    stop_session(daemon, grace_s=30)
    assert session_members(daemon.pid) == []


def test_an_api_submission_becomes_a_video_a_signed_webhook_and_a_closed_stream(platform, tmp_path):
    """API submit (API key) → sensor → run → Serve → video; the SSE stream ends on `succeeded`; the
    webhook sensor POSTs a valid signature to a real receiver; the credits charged are the job's."""
    import secrets
    import threading
    from decimal import Decimal

    import httpx

    from tests.api.conftest import start_api
    from tests.api.test_live_and_limits import read_stream
    from tests.api.test_webhooks import Receiver
    from videogen.accounts.credits import CreditLedger
    from videogen.accounts.keys import ApiKeys
    from videogen.accounts.users import Users
    from videogen.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

    engine, env = platform["engine"], platform["env"]
    users = Users(engine)
    account = users.create("e2e@example.com", None)
    CreditLedger(engine).grant(account["id"], "10")
    key = ApiKeys(engine).create(account["id"], "e2e").key
    secret = users.rotate_webhook_secret(account["id"])
    process, url, log = start_api(env["DATABASE_URL"], tmp_path / "api", jwt_secret=secrets.token_hex(32),
                                  extra_env={"VIDEOGEN_HOME": env["VIDEOGEN_HOME"],
                                             "VIDEOGEN_STORAGE_ROOT": str(Path(env["VIDEOGEN_HOME"]) / "storage"),
                                             "VIDEOGEN_WEBHOOK_ALLOW_PRIVATE": "1"})
    headers = {"X-API-Key": key}
    try:
        with Receiver() as receiver, httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            submitted = http.post("/api/v1/jobs", json={"prompt": "a red fox running in snow",
                                                        "callback_url": receiver.url})
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["id"]
            events, closed = [], threading.Event()
            threading.Thread(target=read_stream, daemon=True,
                             args=(f"{url}/api/v1/jobs/{job_id}/stream", headers, events, closed)).start()
            assert closed.wait(600), f"the stream did not close; see {platform['log']}"
            assert events[-1]["status"] == "succeeded", events[-1]
            statuses = [e["status"] for e in events]  # changes may fall between two polls: an ordered subset
            assert statuses == sorted(statuses, key=["pending", "queued", "running", "succeeded"].index)
            wait_until(lambda: receiver.received, 60, f"the webhook; see {platform['log']}")
            job = http.get(f"/api/v1/jobs/{job_id}").json()
            video = http.get(job["video_url"])
            assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
            assert job["status"] == "succeeded" and job["error"] is None
            row = platform["store"].reads.get(job_id)
            assert len(video.content) == row["output_size_bytes"]
            balance = Decimal(http.get("/api/v1/me").json()["user"]["credit_balance"])
            assert balance == Decimal("10") - row["credits"]
        sent = receiver.received[0]
        assert verify_signature(secret, sent["body"], sent["headers"][SIGNATURE_HEADER],
                                sent["headers"][TIMESTAMP_HEADER])
        assert json.loads(sent["body"])["event"] == "job.succeeded" and len(receiver.received) == 1
    finally:
        stop_session(process, grace_s=20)
    assert_logs_follow_the_job(log, platform["log"], job_id, row["run_id"], secrets=(key, secret))


def json_lines(path: Path) -> tuple[list[dict], list[str]]:
    parsed, other = [], []
    for line in path.read_text(errors="replace").splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            other.append(line)
    return parsed, other


def assert_logs_follow_the_job(api_log: Path, daemon_log: Path, job_id: int, run_id: str, secrets) -> None:
    """One JSON object per line from the API, the daemon, the sensors and the run (its ops); the job's
    story found by its id in each; no secret in any of them."""
    api_lines, api_other = json_lines(api_log)
    daemon_lines, daemon_other = json_lines(daemon_log)
    assert api_other == [] and daemon_other == [], (api_other[:5], daemon_other[:5])
    assert any(e.get("message") == "job submitted" and e.get("job_id") == job_id for e in api_lines)
    assert any(e.get("logger") == "videogen.sensors" and e.get("job_id") == job_id for e in daemon_lines)
    from_run = [e for e in daemon_lines if e.get("service") == "dagster-run"]
    assert from_run and all(e.get("run_id") == run_id and e.get("job_id") == job_id for e in from_run)
    assert any("denoising step" in e["message"] for e in from_run)
    assert any(e.get("logger") == "dagster.daemon.SensorDaemon" for e in daemon_lines)  # the daemon's own
    text = api_log.read_text(errors="replace") + daemon_log.read_text(errors="replace")
    for secret in secrets:
        assert secret not in text
