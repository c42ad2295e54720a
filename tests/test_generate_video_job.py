"""The generate_video job run in-process against real PostgreSQL, the real tiny model and ffmpeg."""

import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines.generate_video import generate_video
from resources.generation import GenerationResource
from resources.jobs import JobsResource
from tests.in_process import run_job_in_process
from tests.trail import assert_trail_in_lifecycle_order
from videogen.lifecycle import JobRequest, JobStore


@pytest.fixture
def run_partition(database_url, tmp_path):
    def run(job_id: int) -> dg.ExecuteInProcessResult:
        return run_job_in_process(generate_video, job_id, database_url=database_url, tmp_path=tmp_path)
    return run


@pytest.fixture
def store(database_url) -> JobStore:
    return JobStore(sa.create_engine(database_url))


def test_a_rejected_request_ends_the_run_quietly_and_the_next_one_succeeds(store, run_partition):
    bad = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", num_frames="10")).job_id
    good = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    result = run_partition(bad)
    assert result.success  # the run did its job: it rejected the request
    skipped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert skipped == {"generate_frames", "encode_video", "check_quality", "upload_outputs", "finalize_job"}
    assert store.reads.get(bad)["status"] == "rejected" and store.reads.get(bad)["error_code"] == "invalid_num_frames"
    assert run_partition(good).success and store.reads.get(good)["status"] == "succeeded"
    # No sensor here: the run's claim records `queued` itself, dated by the run's creation.
    for job_id in (bad, good):
        assert_trail_in_lifecycle_order(store.reads.events(job_id), store.reads.get(job_id))
    assert [e["stage"] for e in store.reads.events(good)][:4] == ["submit", "queue", "validate", "validate"]


def test_same_seed_same_video(store, run_partition):
    first = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", seed=123)).job_id
    second = store.submissions.submit(JobRequest(user_id="bob", prompt="a fox", seed=123)).job_id
    assert run_partition(first).success and run_partition(second).success
    assert store.reads.get(first)["output_sha256"] == store.reads.get(second)["output_sha256"]


def test_a_canceled_job_is_not_processed_by_its_run(store, run_partition):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    store.operator.cancel(job_id)
    result = run_partition(job_id)
    assert result.success
    row = store.reads.get(job_id)
    assert row["status"] == "canceled" and row["attempts"] == 0 and row["output_uri"] is None


def test_a_failed_partition_re_executed_from_the_ui_succeeds(store, run_partition):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    store.runs.claim(job_id, "run-that-died")
    store.runs.fail(job_id, code="worker_lost", message="run died", run_id="run-that-died")
    assert run_partition(job_id).success
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded" and row["attempts"] == 2 and row["error_code"] is None


def test_cancel_during_generation_stops_the_op(store, run_partition, database_url):
    # 128×128×25 frames and many steps: long enough to cancel in the middle.
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", width="128", height="128", num_frames="25",
                                     steps="60")).job_id
    engine = sa.create_engine(database_url)

    def cancel_once_generating():
        for _ in range(2400):
            with engine.connect() as conn:
                progress = conn.execute(sa.text("SELECT progress FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
            if progress and progress > 0:
                store.operator.cancel(job_id)
                return
            threading.Event().wait(0.05)

    canceller = threading.Thread(target=cancel_once_generating)
    canceller.start()
    result = run_partition(job_id)
    canceller.join()
    assert not result.success
    row = store.reads.get(job_id)
    assert row["status"] == "canceled" and row["output_uri"] is None and row["progress"] < 1.0
    assert any("stopped: the job was canceled" in (e["message"] or "") for e in store.reads.events(job_id))


def submit_from_launchpad(database_url: str, tmp_path, **config) -> dg.ExecuteInProcessResult:
    from pipelines.submit_prompt import submit_prompt

    return submit_prompt.execute_in_process(
        run_config={"ops": {"insert_job_request": {"config": config}}}, raise_on_error=False,
        resources={"jobs": JobsResource(database_url=database_url),
                   "generation": GenerationResource(model_cache=str(tmp_path / "models"))})


def test_launchpad_submission_inserts_a_pending_row(store, database_url, tmp_path):
    result = submit_from_launchpad(database_url, tmp_path, prompt="a fox from the UI", width=96, seed=4,
                                   user_id="operator-1")
    assert result.success
    job_id = result.output_for_node("insert_job_request")
    row = store.reads.get(job_id)
    assert (row["status"], row["user_id"], row["width"], row["seed"]) == ("pending", "operator-1", "96", "4")


def test_launchpad_submission_of_a_storyboard_makes_a_film_row(store, database_url, tmp_path):
    board = '{"scenes": [{"prompt": "a fox wakes", "duration_s": 2}, {"prompt": "a fox runs", "duration_s": 1}]}'
    result = submit_from_launchpad(database_url, tmp_path, prompt="the fox's day", storyboard=board)
    assert result.success
    row = store.reads.get(result.output_for_node("insert_job_request"))
    assert row["status"] == "pending" and row["storyboard"]["scenes"][1] == {"prompt": "a fox runs", "duration_s": 1}
    bad = submit_from_launchpad(database_url, tmp_path, prompt="t", storyboard='{"scenes": []}')
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "storyboard.scenes: is empty; a film needs at least one scene" in (
        failure.step_failure_data.user_failure_data.description)


def test_launchpad_submission_of_a_bad_request_says_why(store, database_url, tmp_path):
    result = submit_from_launchpad(database_url, tmp_path, prompt="a fox", width=100)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "width 100 is not allowed: use a multiple of 32" in failure.step_failure_data.user_failure_data.description
    assert store.reads.list(status="rejected")[0]["width"] == "100"


def test_the_heartbeat_lasts_the_whole_run_not_each_stage(store, database_url):
    """Between stages a run may wait for a generation slot (the op pool) longer than the heartbeat
    timeout; its job must not look like one whose worker died."""
    jobs = JobsResource(database_url=database_url)
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    store.runs.claim(job_id, "run-1")
    heartbeat = jobs.keep_alive(job_id, "run-1")
    assert jobs.keep_alive(job_id, "run-1") is heartbeat  # one per job and run
    first = store.reads.get(job_id)["heartbeat_at"]
    deadline = time.monotonic() + 60
    while store.reads.get(job_id)["heartbeat_at"] == first:  # no stage is running: the run's heartbeat beats
        assert time.monotonic() < deadline, "the heartbeat stopped between stages"
        threading.Event().wait(0.2)
    jobs.teardown_after_execution(None)
    assert not heartbeat._thread.is_alive()
