"""Every status transition of the lifecycle, with the audit trail (job_events) checked."""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from videogen.errors import ConflictError, InvalidTransitionError, JobNotFoundError, ValidationError
from videogen.generation.registry import ModelRegistry
from tests.trail import assert_trail_in_lifecycle_order
from videogen.lifecycle import JobRequest, JobStore, run_key


@pytest.fixture
def store(engine) -> JobStore:
    return JobStore(engine)


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry.from_env({})


def trail(store: JobStore, job_id: int) -> list[tuple[str, str | None]]:
    return [(e["status"], e["stage"]) for e in store.reads.events(job_id)]


def test_happy_path_pending_queued_running_succeeded(store, registry):
    sub = store.submissions.submit(JobRequest(user_id="ana", prompt="a red fox"), registry=registry)
    assert (sub.status, sub.created) == ("pending", True)
    assert store.queue.mark_queued({sub.job_id: "run-1"})
    row = store.runs.claim(sub.job_id, "run-1")
    assert row["status"] == "running" and row["attempts"] == 1 and row["run_id"] == "run-1"
    assert row["started_at"] is not None and row["heartbeat_at"] is not None
    assert store.runs.succeed(sub.job_id, run_id="run-1", output_uri="file:///x/video.mp4", thumbnail_uri="file:///x/t.png",
                         output_size_bytes=123, output_sha256="ab" * 32)
    row = store.reads.get(sub.job_id)
    assert row["status"] == "succeeded" and row["progress"] == 1.0 and row["finished_at"] is not None
    assert row["queued_at"] <= row["started_at"] <= row["finished_at"]
    assert trail(store, sub.job_id) == [("pending", "submit"), ("queued", "queue"), ("running", "validate"),
                                        ("succeeded", "done")]
    assert all(e["run_id"] == "run-1" for e in store.reads.events(sub.job_id)[1:])


def test_failed_then_retried_gets_a_new_run_key(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.runs.claim(job_id, "run-1")
    assert store.runs.fail(job_id, code="storage_unavailable", message="endpoint down", run_id="run-1", stage="upload")
    row = store.reads.get(job_id)
    assert (row["status"], row["error_code"]) == ("failed", "storage_unavailable")
    assert store.operator.retry(job_id) == 1
    row = store.reads.get(job_id)
    assert row["status"] == "pending" and row["error_code"] is None and row["run_id"] is None
    assert run_key(job_id, row["submission"]) == f"{job_id}-r1"
    assert trail(store, job_id)[-2:] == [("failed", "upload"), ("pending", "submit")]


def test_rejected_is_final(store, registry):
    sub = store.submissions.submit(JobRequest(user_id="ana", prompt=""), registry=registry)
    assert sub.status == "rejected" and sub.error_code == "empty_prompt"
    assert trail(store, sub.job_id) == [("pending", "submit"), ("rejected", "validate")]
    with pytest.raises(InvalidTransitionError, match="rejected request must be corrected"):
        store.operator.retry(sub.job_id)
    with pytest.raises(InvalidTransitionError, match="only pending, queued or running"):
        store.operator.cancel(sub.job_id)
    assert store.runs.claim(sub.job_id, "run-x") is None


@pytest.mark.parametrize("reach", ["pending", "queued", "running"])
def test_cancel_from_every_active_status(store, reach):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    if reach in ("queued", "running"):
        store.queue.mark_queued({job_id: "run-1"})
    if reach == "running":
        store.runs.claim(job_id, "run-1")
    assert store.operator.cancel(job_id) == "canceled"
    row = store.reads.get(job_id)
    assert row["status"] == "canceled" and row["stage"] == "cancel_requested" and row["finished_at"] is not None
    assert trail(store, job_id)[-1] == ("canceled", "cancel_requested")
    # A canceled job is never claimed by a run, and its run cannot mark it succeeded.
    assert store.runs.claim(job_id, "run-2") is None
    assert not store.runs.succeed(job_id, run_id="run-1", output_uri="u", thumbnail_uri="t", output_size_bytes=1,
                             output_sha256="0" * 64)
    assert store.operator.retry(job_id) == 1 and store.reads.status_of(job_id) == "pending"


def test_succeeded_cannot_be_canceled_or_retried(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.runs.claim(job_id, "run-1")
    store.runs.succeed(job_id, run_id="run-1", output_uri="u", thumbnail_uri="t", output_size_bytes=1,
                  output_sha256="0" * 64)
    with pytest.raises(InvalidTransitionError):
        store.operator.cancel(job_id)
    with pytest.raises(InvalidTransitionError):
        store.operator.retry(job_id)


def test_a_running_job_is_not_claimed_by_a_second_run(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    assert store.runs.claim(job_id, "run-1") is not None
    assert store.runs.claim(job_id, "run-2") is None
    # The same run may claim again (an op retried inside the run).
    assert store.runs.claim(job_id, "run-1")["attempts"] == 2


def test_failed_job_reexecuted_from_the_ui_is_claimed(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.runs.claim(job_id, "run-1")
    store.runs.fail(job_id, code="out_of_memory", message="CUDA OOM", run_id="run-1")
    row = store.runs.claim(job_id, "run-2")
    assert row["status"] == "running" and row["error_code"] is None and row["attempts"] == 2


def test_worker_death_resubmits_with_backoff(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.runs.claim(job_id, "run-1")
    assert store.queue.resubmit_lost(job_id, run_id="run-1", delay_s=60, reason="run died")
    row = store.reads.get(job_id)
    assert row["status"] == "pending" and row["submission"] == 1 and row["not_before"] is not None
    assert store.queue.pending_batch(10) == []  # waits for its backoff
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET not_before = now() - interval '1 second' WHERE id = :id"), {"id": job_id})
    assert [j["id"] for j in store.queue.pending_batch(10)] == [job_id]


def test_idempotency_key_returns_the_same_job(store, registry):
    first = store.submissions.submit(JobRequest(user_id="ana", prompt="p", idempotency_key="k1"), registry=registry)
    again = store.submissions.submit(JobRequest(user_id="ana", prompt="p", idempotency_key="k1"), registry=registry)
    other_user = store.submissions.submit(JobRequest(user_id="bob", prompt="p", idempotency_key="k1"), registry=registry)
    assert again.job_id == first.job_id and not again.created
    assert other_user.job_id != first.job_id and other_user.created
    # The same key for another prompt is a client's mistake, not a replay: refused, nothing stored.
    with pytest.raises(ConflictError, match=r"Idempotency-Key 'k1' was used for another request \(job \d+\)"):
        store.submissions.submit(JobRequest(user_id="ana", prompt="other", idempotency_key="k1"), registry=registry)


def test_pending_batch_is_round_robin_over_users(store):
    ids = {user: [store.submissions.submit(JobRequest(user_id=user, prompt="p")).job_id for _ in range(n)]
           for user, n in (("heavy", 5), ("light", 1), ("other", 2))}
    order = [j["user_id"] for j in store.queue.pending_batch(4)]
    assert order == ["heavy", "light", "other", "heavy"]
    assert store.queue.pending_batch(1)[0]["id"] == ids["heavy"][0]


def test_unknown_job(store):
    with pytest.raises(JobNotFoundError, match="job 999 does not exist"):
        store.reads.get(999)
    with pytest.raises(JobNotFoundError):
        store.operator.cancel(999)


def test_empty_user_is_refused(store):
    with pytest.raises(ValidationError, match="user_id is empty"):
        store.submissions.submit(JobRequest(user_id="  ", prompt="p"))


def test_a_run_that_starts_before_the_sensor_confirms_records_queued_itself(store):
    """The lost-`queued` bug: on an idle queue a run starts before the sensor's next tick."""
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    # The run was created at the row's own commit time: never later than the claim's now(). (Adding a
    # few milliseconds made the test fail whenever the claim came sooner than that.)
    run_created = store.reads.get(job_id)["created_at"]
    row = store.runs.claim(job_id, "run-1", run_created_at=run_created)
    assert row["status"] == "running" and row["queued_at"] == run_created <= row["started_at"]
    # The sensor's confirmation on its next tick comes too late and changes nothing.
    assert store.queue.mark_queued({job_id: "run-1"}) == []
    events = store.reads.events(job_id)
    assert trail(store, job_id) == [("pending", "submit"), ("queued", "queue"), ("running", "validate")]
    assert [e["run_id"] for e in events[1:]] == ["run-1", "run-1"]
    assert_trail_in_lifecycle_order(events, store.reads.get(job_id))


def test_a_run_creation_time_ahead_of_the_database_clock_never_dates_queued_after_started(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    skewed = datetime.now(timezone.utc) + timedelta(hours=1)
    row = store.runs.claim(job_id, "run-1", run_created_at=skewed.replace(tzinfo=None))  # naive = UTC
    assert row["queued_at"] <= row["started_at"]


def test_queued_is_recorded_once_per_run_across_resubmissions_and_reexecution(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.queue.mark_queued({job_id: "run-1"})
    store.runs.claim(job_id, "run-1")
    assert store.queue.resubmit_lost(job_id, run_id="run-1", delay_s=0, reason="run died")
    store.runs.claim(job_id, "run-2")  # the new run started before the sensor confirmed it
    store.runs.fail(job_id, code="out_of_memory", message="CUDA OOM", run_id="run-2")
    store.runs.claim(job_id, "run-3")  # re-executed from the UI
    events = store.reads.events(job_id)
    assert [(e["status"], e["run_id"]) for e in events if e["stage"] == "queue"] == [
        ("queued", "run-1"), ("queued", "run-2"), ("queued", "run-3")]
    assert_trail_in_lifecycle_order(events, store.reads.get(job_id))


def test_a_resubmission_for_a_run_that_no_longer_holds_the_job_changes_nothing(store):
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="p")).job_id
    store.runs.claim(job_id, "run-2")
    assert not store.queue.resubmit_lost(job_id, run_id="run-1", delay_s=0, reason="stale report")
    assert store.reads.get(job_id)["status"] == "running"
