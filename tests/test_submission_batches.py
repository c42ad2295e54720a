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
