"""A submission's two counts (migration 0008): the active-jobs cap stops counting at the cap, in
api_submit_job() and in the general path, and still refuses at exactly the cap with the real count in
its message; the queue position is the exact number of waiting jobs ahead, the same in the function's
answer and in JobPageReads; and both counts can be read from their partial indexes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.test_one_trip_submission import account, submit
from videogen.errors import RateLimitedError
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import Account, JobPageReads, JobRequest, JobStore
from videogen.lifecycle.reads import waiting_ahead
from videogen.lifecycle.submission import _capped_jobs

TINY = {"prompt": "a red fox running in snow", "width": 64, "height": 64, "num_frames": 9, "steps": 4}


def add_jobs(engine: sa.Engine, user_id: str, *statuses: str) -> None:
    with engine.begin() as conn:
        for status in statuses:
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) VALUES (:u, 'by SQL', :s)"),
                         {"u": user_id, "s": status})


@pytest.mark.parametrize("max_active", [1, 3])
def test_the_one_trip_cap_refuses_at_exactly_max_active(engine, database_url, max_active):
    user_id, credentials = account(engine)
    # Neither finished jobs of the user nor active jobs of someone else count.
    add_jobs(engine, user_id, "succeeded", "failed", "canceled", "rejected")
    add_jobs(engine, "someone else", *["pending"] * (max_active + 2))
    add_jobs(engine, user_id, *(["pending", "queued", "running"] * max_active)[:max_active - 1])
    assert submit(engine, database_url, credentials, max_active=max_active) is not None  # max_active - 1 ahead
    assert submit(engine, database_url, credentials, max_active=max_active) is None  # max_active: the general path
    add_jobs(engine, user_id, "running", "queued")
    assert submit(engine, database_url, credentials, max_active=max_active) is None  # more than the cap


def test_the_general_path_refuses_at_exactly_max_active_and_says_how_many_there_are(engine):
    user_id, _ = account(engine)
    submissions = JobStore(engine).submissions
    registry, capped = ModelRegistry.from_env(), Account(reserve_credits=False, max_active_jobs=3)
    add_jobs(engine, user_id, "succeeded", "failed", "canceled", "rejected")
    add_jobs(engine, "someone else", *["pending"] * 5)
    add_jobs(engine, user_id, "running", "queued")
    assert submissions.submit(JobRequest(user_id=user_id, **TINY), registry, capped).status == "pending"
    with pytest.raises(RateLimitedError) as refused:
        submissions.submit(JobRequest(user_id=user_id, **TINY), registry, capped)
    assert refused.value.code == "too_many_active_jobs"
    assert str(refused.value).startswith("3 of your jobs are pending, queued or running (the limit is 3)")
    add_jobs(engine, user_id, "pending", "pending")  # past the cap (rows written by SQL have no cap)
    with pytest.raises(RateLimitedError) as refused:
        submissions.submit(JobRequest(user_id=user_id, **TINY), registry, capped)
    assert str(refused.value).startswith("5 of your jobs are pending, queued or running (the limit is 3)")


def test_the_queue_position_of_a_submission_is_the_exact_count_and_the_reads(engine, database_url):
    user_id, credentials = account(engine)
    add_jobs(engine, "someone else", "pending", "queued", "running", "succeeded", "failed", "rejected",
             "canceled", "queued", "pending")
    with engine.begin() as conn:  # a waiting job with a larger id than the next one is not ahead of it
        conn.execute(sa.text("INSERT INTO jobs (id, user_id, prompt) VALUES (1000000, 'later', 'x')"))
    done = submit(engine, database_url, credentials)
    assert done is not None
    with engine.connect() as conn:
        expected = conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') "
                                        "AND id < :j"), {"j": done.job["id"]}).scalar_one()
    assert expected == 4
    assert done.queue_position == JobPageReads(engine).with_queue_position(done.job["id"])[1] == expected
    add_jobs(engine, user_id, "pending")  # behind it: no change
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = 'running' WHERE user_id = 'someone else' "
                             "AND status = 'queued'"))
    assert JobPageReads(engine).with_queue_position(done.job["id"])[1] == 2


def plan(engine: sa.Engine, query: sa.Select) -> str:
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        return "\n".join(conn.execute(sa.text("EXPLAIN " + str(query.compile(
            engine, compile_kwargs={"literal_binds": True})))).scalars())


def test_both_counts_can_be_served_by_their_partial_indexes(engine):
    add_jobs(engine, "ana", "pending", "queued", "running", "succeeded")
    assert "Index Only Scan using jobs_waiting_idx" in plan(engine, waiting_ahead(3))
    assert "jobs_user_active_idx" in plan(engine, _capped_jobs("ana", 20))
    assert "jobs_user_active_idx" in plan(engine, _capped_jobs("ana"))
