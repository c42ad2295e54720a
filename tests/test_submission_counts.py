"""A submission's two counts: the active-jobs cap reads each account's kept count of its active jobs
(migration 0011), which stays equal to a count of them after every kind of statement, under
concurrent writers and rollbacks, and refuses at exactly the cap, in api_submit_job() and in the
general path, with the real count in its message; the queue position is the exact number of waiting jobs ahead, the same in the function's
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


# ── each account's count of its active jobs (migration 0011) ─────────────────────────────────────
ACCOUNTS = ("ana", "bo", "cy", "dan")


def make_accounts(engine: sa.Engine, *ids: str) -> None:
    with engine.begin() as conn:
        for user_id in ids:
            conn.execute(sa.text("INSERT INTO users (id, email) VALUES (:u, :u || '@example.com')"), {"u": user_id})


def kept_and_counted(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    """Per account: its kept count, and a count of its jobs in the capped statuses."""
    return {user_id: (kept, counted) for user_id, kept, counted in conn.execute(sa.text(
        "SELECT u.id, u.active_jobs, (SELECT count(*) FROM jobs j WHERE j.user_id = u.id "
        "AND j.status IN ('pending', 'queued', 'running')) FROM users u"))}


def assert_exact(conn: sa.Connection, what: str) -> dict[str, int]:
    counts = kept_and_counted(conn)
    assert all(kept == counted for kept, counted in counts.values()), f"{what}: {counts}"
    return {user_id: kept for user_id, (kept, _) in counts.items()}


MORE_ACTIVE_STATEMENTS = [  # with STATEMENTS below: every way a statement moves a job into or out of the cap, and some that do not
    "UPDATE jobs SET status = 'running' WHERE user_id = 'cy' AND id % 2 = 0",  # capped → capped
    "UPDATE jobs SET user_id = 'dan' WHERE user_id = 'cy' AND id % 3 = 0",  # another owner (an erasure)
    "UPDATE jobs SET user_id = 'no account' WHERE user_id = 'cy' AND id % 5 = 0",  # to no account
    "UPDATE jobs SET user_id = 'ana', status = 'succeeded' WHERE user_id = 'no account' AND id % 2 = 0",
    "UPDATE jobs SET user_id = 'bo', status = 'pending' WHERE user_id = 'dan' AND status = 'canceled'",
    "UPDATE jobs SET status = 'succeeded' WHERE user_id = 'cy' AND status = 'running'",
]


def test_each_account_keeps_the_exact_count_of_its_active_jobs_after_every_kind_of_statement(engine):
    add_jobs(engine, "ana", "pending", "succeeded")  # before the account: a new account starts from its jobs
    make_accounts(engine, *ACCOUNTS)
    with engine.connect() as conn:
        assert assert_exact(conn, "new accounts")["ana"] == 1
    for statement in [*STATEMENTS, *MORE_ACTIVE_STATEMENTS]:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
            assert_exact(conn, f"inside the transaction, after: {statement}")
        with engine.connect() as conn:
            kept = assert_exact(conn, f"after: {statement}")
    assert sum(kept.values()) > 20 and kept["cy"] > 0 and kept["dan"] > 0  # the statements moved counts
    with engine.connect() as conn:  # rolled back: neither the row nor its count stay
        with conn.begin() as transaction:
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('dan', 'never')"))
            assert assert_exact(conn, "inside")["dan"] == kept["dan"] + 1
            transaction.rollback()
        assert assert_exact(conn, "rolled back") == kept
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE jobs CASCADE"))
        assert set(assert_exact(conn, "after TRUNCATE").values()) == {0}


def test_the_kept_count_stays_exact_under_concurrent_writers_some_of_them_rolled_back(engine):
    make_accounts(engine, "w0", "w1", "w2")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                with engine.connect() as conn, conn.begin() as transaction:
                    user_id = f"w{(n + i) % 3}"  # writers share accounts
                    conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES (:u, 'x')"), {"u": user_id})
                    conn.execute(sa.text(
                        "UPDATE jobs SET status = 'succeeded' WHERE id = (SELECT id FROM jobs WHERE user_id = :u "
                        "AND status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"), {"u": user_id})
                    conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES (:u, 'y')"), {"u": user_id})
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
        kept = assert_exact(conn, "after the writers")
    assert sum(kept.values()) == 6 * 26  # 6 writers × 26 kept transactions × (2 − 1)


# ── the tally of waiting jobs (migrations 0009 and 0011) and the queue position ─────────────────────
def tally_and_count(conn: sa.Connection) -> tuple[int, int]:
    return conn.execute(sa.text(
        "SELECT (SELECT sum(waiting) FROM waiting_jobs_slots), "
        "(SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued'))")).one()


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


def test_writers_of_the_tally_do_not_wait_on_one_another(engine):
    """Transactions that changed the number of waiting jobs and have not committed hold a slot each;
    another writer takes a free one (a wait would fail on its lock timeout)."""
    holders = [engine.connect() for _ in range(4)]
    try:
        for n, conn in enumerate(holders):
            conn.begin()
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES (:u, 'held')"), {"u": f"holder {n}"})
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('free', 'x')"))
            conn.execute(sa.text("UPDATE jobs SET status = 'running' WHERE user_id = 'free'"))
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('free', 'y')"))
        with engine.connect() as conn:
            held = conn.execute(sa.text("SELECT count(*) FROM waiting_jobs_slots s WHERE EXISTS ("
                                        "SELECT 1 FROM waiting_jobs_slots l WHERE l.slot = s.slot "
                                        "FOR UPDATE SKIP LOCKED)")).scalar_one()
            assert held == 128 - 4  # the four open transactions hold four slots
            assert tally_and_count(conn) == (1, 1)
        for conn in holders[:2]:
            conn.commit()
        holders[2].rollback()
    finally:
        for conn in holders:
            conn.close()
    with engine.connect() as conn:
        assert tally_and_count(conn) == (3, 3)


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
