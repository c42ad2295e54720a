"""Submissions that wait for a connection together go in one statement (videogen.lifecycle.one_trip,
api_submit_jobs(), migration 0012), on the real PostgreSQL: each gets its own answer, a refused one is
rolled back alone, two batches that share accounts in opposite orders never deadlock, and a batch that
fails for another reason than a refusal is sent again one at a time, so only its cause fails."""

from __future__ import annotations

import asyncio
import concurrent.futures

import sqlalchemy as sa

from tests.test_one_trip_submission import BODY, account, refused_caller, traces
from videogen.accounts.ratelimit import SharedRateLimiter
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import Account, JobRequest
from videogen.lifecycle.one_trip import OneTripCalls


def calls_for(engine: sa.Engine, database_url: str, *, connections: int = 1) -> OneTripCalls:
    return OneTripCalls(database_url, limiter=SharedRateLimiter(engine, 1000), registry=ModelRegistry.from_env(),
                        account=Account(reserve_credits=True, max_active_jobs=1000), max_connections=connections)


def run(coroutine_function):
    """On a thread of its own (see tests/test_one_trip_submission.one_trip)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine_function()).result()


async def together(calls: OneTripCalls, submissions: list[tuple]) -> list:
    """Every (credentials, prompt[, idempotency key]) submitted at once; the answers, or exceptions."""
    return await asyncio.gather(*(calls.submit(s[0], JobRequest(user_id="", **{**BODY, "prompt": s[1]},
                                                                idempotency_key=s[2] if len(s) > 2 else None))
                                  for s in submissions), return_exceptions=True)


def writers(engine: sa.Engine, job_ids: list[int]) -> set:
    """The transactions that wrote these jobs, by their start time (``created_at`` is now(), which is
    the same for every statement of a transaction; a batch's rows have subtransactions' xmins)."""
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT created_at FROM jobs WHERE id = ANY(:ids)"), {"ids": job_ids}).scalars())


def test_submissions_that_wait_together_are_one_transaction_and_each_gets_its_answer(engine, database_url):
    accounts = [account(engine) for _ in range(4)]
    calls = calls_for(engine, database_url, connections=1)
    submissions = [(accounts[i % 4][1], f"fox {i}") for i in range(12)]

    async def go():
        try:
            return await together(calls, submissions)
        finally:
            await calls.close()

    answers = run(go)
    assert all(answer is not None and not isinstance(answer, Exception) for answer in answers), answers
    for i, answer in enumerate(answers):  # each caller got its own job, as its own account
        assert (answer.job["prompt"], answer.principal.user_id) == (f"fox {i}", accounts[i % 4][0])
    assert len(writers(engine, [answer.job["id"] for answer in answers])) == 1
    for user_id, _ in accounts:
        assert traces(engine, user_id)["jobs"] == traces(engine, user_id)["hits"] == 3


def test_a_refused_submission_in_a_batch_is_rolled_back_alone(engine, database_url):
    good_id, good = account(engine)
    refused = {}
    for case in ("wrong key", "revoked key", "erased account", "unknown token user"):
        user_id, credentials = account(engine)
        refused[case] = (user_id, refused_caller(engine, case, user_id, credentials)[0])
    poor_id, poor = account(engine, credits="0.01")
    refused["credits"] = (poor_id, poor)
    before = {case: traces(engine, user_id) for case, (user_id, _) in refused.items()}
    calls = calls_for(engine, database_url, connections=1)
    submissions = [(good, "first"), *((credentials, case) for case, (_, credentials) in refused.items()),
                   (good, "second", "key-2"), (good, "again", "key-2")]  # the same key twice: refused

    async def go():
        try:
            return await together(calls, submissions)
        finally:
            await calls.close()

    answers = run(go)
    assert [answer is None for answer in answers] == [False, *[True] * len(refused), False, True]
    assert [answers[0].job["prompt"], answers[-2].job["prompt"]] == ["first", "second"]
    assert len(writers(engine, [answers[0].job["id"], answers[-2].job["id"]])) == 1
    assert {case: traces(engine, user_id) for case, (user_id, _) in refused.items()} == before
    assert traces(engine, good_id)["hits"] == 2  # the refused third one left no count either
    with engine.connect() as conn:  # and the counts kept by triggers agree with the rows
        assert conn.execute(sa.text(
            "SELECT bool_and(u.active_jobs = (SELECT count(*) FROM jobs j WHERE j.user_id = u.id "
            "AND j.status IN ('pending', 'queued', 'running'))) FROM users u")).scalar_one()
        assert conn.execute(sa.text("SELECT (SELECT sum(waiting) FROM waiting_jobs_slots) = "
                                    "(SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued'))")).scalar_one()


def test_batches_that_share_accounts_in_opposite_orders_do_not_deadlock(engine, database_url):
    """Each round, two batches (two API processes) submit for the same six accounts, one in the
    reverse order of the other. Without the function's lock order they deadlock (PostgreSQL then
    aborts one, and its submissions would be sent again one at a time); with it, each batch stays
    one transaction."""
    accounts = [account(engine, credits="100") for _ in range(6)]
    first, second = calls_for(engine, database_url), calls_for(engine, database_url)

    async def go():
        try:
            rounds = []
            for n in range(10):
                forward = [(credentials, f"round {n} forward {i}") for i, (_, credentials) in enumerate(accounts)]
                backward = [(credentials, f"round {n} backward {i}") for i, (_, credentials) in enumerate(accounts)][::-1]
                rounds.append(await asyncio.gather(together(first, forward), together(second, backward)))
            return rounds
        finally:
            await first.close()
            await second.close()

    for batches in run(go):
        for answers in batches:
            assert all(answer is not None and not isinstance(answer, Exception) for answer in answers), answers
            assert len(writers(engine, [answer.job["id"] for answer in answers])) == 1


def test_a_batch_that_fails_for_another_reason_is_sent_again_one_at_a_time(engine, database_url):
    user_id, credentials = account(engine)
    calls = calls_for(engine, database_url, connections=1)
    # PostgreSQL refuses text with a NUL character: an error of the statement, not a refusal.
    submissions = [(credentials, "before"), (credentials, "bad", "nul\x00key"), (credentials, "after")]

    async def go():
        try:
            return await together(calls, submissions)
        finally:
            await calls.close()

    before, bad, after = run(go)
    assert isinstance(bad, Exception) and "0x00" in str(bad)
    assert (before.job["prompt"], after.job["prompt"]) == ("before", "after")
    assert len(writers(engine, [before.job["id"], after.job["id"]])) == 2  # sent one at a time
    assert traces(engine, user_id)["jobs"] == 2


# ── the waits that could close a cycle with a batch (reproduced by a review, then removed) ──────────
def call_submit(conn: sa.Connection, prefix: str, digest: str, *, cleanup_before: int | None = None):
    """api_submit_job() as OneTripCalls calls it, on ``conn``."""
    return conn.execute(sa.text(
        "SELECT (s.job).id FROM api_submit_job(p_key_prefix => :p, p_key_hash => :h, p_token_user => NULL, "
        "p_window => :w, p_rate_limit => 1000, p_cleanup_before => :c, p_max_active => 1000, p_price => 0.1, "
        "p_prompt => 'x', p_negative_prompt => '', p_model => 'tiny', p_width => '64', p_height => '64', "
        "p_num_frames => '9', p_fps => '8', p_steps => '4', p_guidance_scale => '5', p_seed => '1', "
        "p_quality_preset => 'STANDARD', p_priority => 0, p_idempotency_key => NULL, p_callback_url => NULL) s"),
        {"p": prefix, "h": digest, "w": 1_000_000, "c": cleanup_before}).scalar_one()


def call_read(conn: sa.Connection, prefix: str, digest: str, job_id: int, *, cleanup_before: int | None = None):
    return conn.execute(sa.text(
        "SELECT (r.job).id FROM api_read_job(p_key_prefix => :p, p_key_hash => :h, p_token_user => NULL, "
        "p_window => 1000000, p_rate_limit => 1000, p_cleanup_before => :c, p_job_id => :j) r"),
        {"p": prefix, "h": digest, "c": cleanup_before, "j": job_id}).scalar_one()


def test_the_one_trip_functions_never_wait_for_a_key_row_or_an_old_window_another_transaction_holds(engine):
    """A transaction that holds a key's row (the general path's caller() updating its last use) or an
    old rate-limit window (another cleanup) does not make api_submit_job() or api_read_job() wait: a
    batch holding several accounts' rate-limit rows could otherwise wait on it in a cycle."""
    _, credentials = account(engine)
    key, digest = credentials.key_prefix, credentials.key_hash
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO api_rate_limits (user_id, window_start, count) VALUES ('old', 1, 1), ('old', 2, 1)"))
    holder = engine.connect()
    try:
        with holder.begin():
            holder.execute(sa.text("UPDATE api_keys SET last_used_at = NULL WHERE prefix = :p"), {"p": key})
        holder.begin()
        holder.execute(sa.text("SELECT 1 FROM api_keys WHERE prefix = :p FOR UPDATE"), {"p": key})
        holder.execute(sa.text("SELECT 1 FROM api_rate_limits WHERE user_id = 'old' AND window_start = 1 FOR UPDATE"))
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))  # a wait fails the test
            job_id = call_submit(conn, key, digest, cleanup_before=100)
            assert call_read(conn, key, digest, job_id, cleanup_before=100) == job_id
            left = conn.execute(sa.text("SELECT window_start FROM api_rate_limits WHERE user_id = 'old'")).scalars().all()
            last_used = conn.execute(sa.text("SELECT last_used_at FROM api_keys WHERE prefix = :p"), {"p": key}).scalar()
        assert left == [1]  # the held window is left to its holder, the other one deleted
        assert last_used is None  # the holder writes the key's last use
        holder.rollback()
    finally:
        holder.close()


def test_the_general_path_cleanup_skips_an_old_window_another_transaction_holds(engine, monkeypatch):
    user_id, _ = account(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO api_rate_limits (user_id, window_start, count) VALUES ('old', 1, 1), ('old', 2, 1)"))
    monkeypatch.setattr(SharedRateLimiter, "cleanup_before", staticmethod(lambda window: window - 3600))
    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(sa.text("SELECT 1 FROM api_rate_limits WHERE user_id = 'old' AND window_start = 1 FOR UPDATE"))
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            assert SharedRateLimiter(engine, 10).hit(user_id, conn=conn).allowed
            left = conn.execute(sa.text("SELECT window_start FROM api_rate_limits WHERE user_id = 'old'")).scalars().all()
        assert left == [1]
        holder.rollback()
    finally:
        holder.close()


def test_an_erasure_does_not_hold_the_account_while_it_waits_for_a_job_a_transition_holds(engine, tmp_path):
    """A job's transition locks the job, then its owner's row (the active count, a refund); the
    erasure locks the account's jobs before the account: while it waits for the job, the transition
    can still take the owner's row."""
    import threading

    from tests.waiting import wait_until
    from videogen.accounts.erasure import AccountEraser
    from videogen.storage.local import LocalObjectStorage

    user_id, _ = account(engine)
    with engine.begin() as conn:
        job_id = conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status, callback_url) VALUES "
                                      "(:u, 'x', 'succeeded', 'https://example.com/h') RETURNING id"),
                              {"u": user_id}).scalar_one()
    transition = engine.connect()
    errors: list[BaseException] = []
    try:
        transition.begin()
        transition.execute(sa.text("SELECT 1 FROM jobs WHERE id = :j FOR UPDATE"), {"j": job_id})
        eraser = AccountEraser(engine, LocalObjectStorage(root=tmp_path / "bucket"))

        def erase() -> None:
            try:
                eraser.erase(user_id, requested_by=user_id)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=erase)
        thread.start()

        def waiting_for_a_lock() -> bool:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                            "AND wait_event_type = 'Lock'")).scalar_one() > 0

        wait_until(waiting_for_a_lock, 30, "the erasure to wait for the job's row")
        transition.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
        transition.execute(sa.text("UPDATE users SET credit_balance = credit_balance WHERE id = :u"), {"u": user_id})
        transition.commit()
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors, errors
    finally:
        transition.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT user_id <> :u FROM jobs WHERE id = :j"), {"u": user_id, "j": job_id}).scalar()
