"""A submission's two counts: the active-jobs cap stops counting at the cap (migration 0008), in
api_submit_job() and in the general path, and still refuses at exactly the cap with the real count in
its message; the queue position is the exact number of waiting jobs ahead, the same in the function's
answer and in JobPageReads, read from either side of the line through the tally of waiting jobs
(migration 0009), which stays equal to a count of them after every kind of statement, under
concurrent writers and rollbacks, and folds its rows as writes go on."""

from __future__ import annotations

import random
import threading

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


def test_the_cap_count_can_be_served_by_its_partial_index(engine):
    add_jobs(engine, "ana", "pending", "queued", "running", "succeeded")
    assert "jobs_user_active_idx" in plan(engine, _capped_jobs("ana", 20))
    assert "jobs_user_active_idx" in plan(engine, _capped_jobs("ana"))


# ── the tally of waiting jobs and the queue position (migration 0009) ───────────────────────────────
def tally_and_count(conn: sa.Connection) -> tuple[int, int]:
    return conn.execute(sa.text(
        "SELECT (SELECT coalesce(sum(change), 0) FROM waiting_jobs_tally), "
        "(SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued'))")).one()


def tally_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM waiting_jobs_tally")).scalar_one()


STATEMENTS = [  # every way a statement changes the number of waiting jobs, and some that do not
    "INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'one')",
    ("INSERT INTO jobs (user_id, prompt, status) SELECT 'bo', 'many', s FROM unnest("
     "ARRAY['pending', 'queued', 'running', 'rejected', 'pending']) s"),
    "INSERT INTO jobs (user_id, prompt, status) VALUES ('bo', 'rejected at once', 'rejected')",
    "UPDATE jobs SET status = 'queued' WHERE status = 'pending' AND user_id = 'bo'",  # waiting → waiting
    "UPDATE jobs SET status = 'running' WHERE id IN (SELECT min(id) FROM jobs WHERE status = 'queued')",
    "UPDATE jobs SET status = 'canceled' WHERE status IN ('pending', 'running') AND user_id = 'ana'",
    "UPDATE jobs SET status = 'pending' WHERE status = 'running'",  # a retry: back in the line
    "UPDATE jobs SET progress = 0.5",  # nothing about waiting
    "DELETE FROM jobs WHERE status = 'queued' AND user_id = 'bo' AND id = (SELECT max(id) FROM jobs)",
    "DELETE FROM jobs WHERE user_id = 'bo' AND status = 'queued'",
    "INSERT INTO jobs (user_id, prompt) SELECT 'cy', 'bulk ' || i FROM generate_series(1, 50) i",
    ("INSERT INTO jobs (user_id, prompt, status, idempotency_key) VALUES ('dan', 'x', 'rejected', 'k') "
     "ON CONFLICT ON CONSTRAINT jobs_user_idempotency_key DO UPDATE SET status = 'pending'"),  # inserted
    ("INSERT INTO jobs (user_id, prompt, status, idempotency_key) VALUES ('dan', 'x', 'rejected', 'k') "
     "ON CONFLICT ON CONSTRAINT jobs_user_idempotency_key DO UPDATE SET status = 'pending'"),  # updated: +1
    "UPDATE jobs SET status = status",  # every row updated, none moved
    "DELETE FROM jobs WHERE user_id = 'nobody'",
]


def test_the_tally_equals_the_count_of_waiting_jobs_after_every_kind_of_statement(engine):
    for statement in STATEMENTS:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
            tally, count = tally_and_count(conn)
            assert tally == count, f"inside the transaction, after: {statement}"
        with engine.connect() as conn:
            assert tally_and_count(conn) == (count, count), f"after: {statement}"
    assert count == 53
    with engine.connect() as conn:  # rolled back: neither the rows nor their change stay
        with conn.begin() as transaction:
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('dan', 'never')"))
            assert tally_and_count(conn) == (54, 54)
            transaction.rollback()
        assert tally_and_count(conn) == (53, 53)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))
        assert tally_and_count(conn) == (0, 0)
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'after truncate')"))
    with engine.connect() as conn:
        assert tally_and_count(conn) == (1, 1)


def test_the_tally_folds_its_rows_as_writes_go_on(engine):
    # The migration's seed row, then one row per write; every 64th write folds them all into one.
    for writes in range(1, 201):
        add_jobs(engine, f"user {writes % 7}", "pending")
        assert tally_rows(engine) == writes % 64 + 1, f"after {writes} writes"
    with engine.connect() as conn:
        assert tally_and_count(conn) == (200, 200)


def test_the_tally_stays_exact_under_concurrent_writers_some_of_them_rolled_back(engine):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(60):
                with engine.connect() as conn, conn.begin() as transaction:
                    conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES (:u, 'x')"), {"u": f"w{n}"})
                    conn.execute(sa.text(
                        "UPDATE jobs SET status = 'running' WHERE id = (SELECT min(id) FROM jobs "
                        "WHERE user_id = :u AND status = 'pending')"), {"u": f"w{n}"})
                    conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES (:u, 'y')"), {"u": f"w{n}"})
                    if i % 3 == 0:
                        transaction.rollback()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    with engine.connect() as conn:
        assert tally_and_count(conn) == (240, 240)  # 6 writers × 40 kept transactions × (2 − 1)


def naive_ahead(conn: sa.Connection, job_id: int) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') AND id < :j"),
                        {"j": job_id}).scalar_one()


def test_the_queue_position_is_exact_from_either_side_of_the_line(engine):
    rng = random.Random(3)
    statuses = ["pending", "queued", "running", "succeeded", "failed", "canceled", "rejected"]
    add_jobs(engine, "ana", *[rng.choice(statuses) for _ in range(300)])
    reads = JobPageReads(engine)
    with engine.connect() as conn:
        waiting = conn.execute(sa.text("SELECT id FROM jobs WHERE status IN ('pending', 'queued') ORDER BY id")
                               ).scalars().all()
        assert len(waiting) > 50
        for job_id in waiting:
            expected = naive_ahead(conn, job_id)
            assert reads.with_queue_position(job_id)[1] == expected
            assert conn.execute(waiting_ahead(job_id)).scalar_one() == expected
        assert [naive_ahead(conn, j) for j in (waiting[0], waiting[-1])] == [0, len(waiting) - 1]
        # Jobs that are not waiting have no position in the reads.
        finished = conn.execute(sa.text("SELECT id FROM jobs WHERE status = 'succeeded' LIMIT 1")).scalar_one()
    assert reads.with_queue_position(finished)[1] is None
