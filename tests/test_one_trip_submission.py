"""api_submit_job() (migration 0007) and api_read_job() (0010) through videogen.lifecycle.one_trip, on
the real PostgreSQL: a request with nothing to refuse writes and reads exactly what the general path
does; any refusal leaves no trace at all (not even the rate-limit count), so that the general path,
which then answers, counts the request once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
from decimal import Decimal

import pytest
import sqlalchemy as sa

from videogen.accounts.credits import CreditLedger
from videogen.accounts.keys import ApiKeys, lookup
from videogen.accounts.ratelimit import SharedRateLimiter
from videogen.accounts.tokens import AccessTokens
from videogen.accounts.users import Users
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import Account, JobPageReads, JobRequest, JobStore
from videogen.lifecycle.one_trip import Credentials, OneTripCalls

BODY = {"prompt": "a red fox running in snow", "width": 64, "height": 64, "num_frames": 9, "steps": 4}


def one_trip(engine: sa.Engine, database_url: str, call, *, rate_limit: int = 20, max_active: int | None = 10,
             reserve: bool = True):
    """``call(calls)``, a coroutine, run against a fresh OneTripCalls that is closed after it."""
    calls = OneTripCalls(database_url, limiter=SharedRateLimiter(engine, rate_limit),
                         registry=ModelRegistry.from_env(),
                         account=Account(reserve_credits=reserve, max_active_jobs=max_active))

    async def go():
        try:
            return await call(calls)
        finally:
            await calls.close()

    # On a thread of its own: a browser test earlier in the session (Playwright's sync API) leaves an
    # event loop running on the main thread, where asyncio.run() refuses to start another.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, go()).result()


def submit(engine: sa.Engine, database_url: str, credentials: Credentials, *, rate_limit: int = 20,
           max_active: int | None = 10, reserve: bool = True, **body):
    return one_trip(engine, database_url,
                    lambda calls: calls.submit(credentials, JobRequest(user_id="", **{**BODY, **body})),
                    rate_limit=rate_limit, max_active=max_active, reserve=reserve)


def read(engine: sa.Engine, database_url: str, credentials: Credentials, job_id: int, *, rate_limit: int = 20):
    return one_trip(engine, database_url, lambda calls: calls.read_job(credentials, job_id), rate_limit=rate_limit)


def account(engine: sa.Engine, *, role: str = "user", credits: str = "10", scopes=("read", "write")):
    user = Users(engine).create(f"one-trip-{secrets.token_hex(4)}@example.com", None, role=role)
    CreditLedger(engine).grant(user["id"], credits)
    key = ApiKeys(engine).create(user["id"], "test", scopes)
    prefix, digest = lookup(key.key)
    return user["id"], Credentials(key_prefix=prefix, key_hash=digest)


def traces(engine: sa.Engine, user_id: str) -> dict:
    with engine.connect() as conn:
        one = lambda sql: conn.execute(sa.text(sql), {"u": user_id}).scalar()  # noqa: E731
        return {"jobs": one("SELECT count(*) FROM jobs WHERE user_id = :u"),
                "hits": one("SELECT coalesce(sum(count), 0) FROM api_rate_limits WHERE user_id = :u"),
                "ledger": one("SELECT count(*) FROM credit_ledger WHERE user_id = :u AND kind = 'reserve'"),
                "balance": one("SELECT credit_balance FROM users WHERE id = :u")}


def test_a_submission_with_nothing_to_refuse(engine, database_url):
    user_id, credentials = account(engine)
    JobStore(engine).submissions.submit(JobRequest(user_id="someone else", prompt="ahead in the queue"))
    done = submit(engine, database_url, credentials, idempotency_key="order-1")
    assert done is not None
    assert (done.principal.user_id, done.principal.role, done.principal.scopes) == (user_id, "user",
                                                                                    frozenset({"read", "write"}))
    job, position = JobPageReads(engine).with_queue_position(done.job["id"])
    assert done.job == job  # the row as the general path reads it back
    assert done.queue_position == position == 1
    assert (job["status"], job["user_id"], job["width"], job["model"], job["quality_preset"],
            job["idempotency_key"]) == ("pending", user_id, "64", "tiny", "STANDARD", "order-1")
    with engine.connect() as conn:
        reserve = conn.execute(sa.text("SELECT amount, submission, note FROM credit_ledger "
                                       "WHERE job_id = :j AND kind = 'reserve'"), {"j": job["id"]}).one()
        last_used = conn.execute(sa.text("SELECT last_used_at FROM api_keys WHERE user_id = :u"),
                                 {"u": user_id}).scalar()
    assert reserve.submission == 0 and reserve.note == "reserved at submission" and reserve.amount < 0
    assert traces(engine, user_id) == {"jobs": 1, "hits": 1, "ledger": 1, "balance": Decimal("10") + reserve.amount}
    assert last_used is not None


def test_an_access_token_names_the_account(engine, database_url):
    user_id, _ = account(engine)
    tokens = AccessTokens("x" * 32, 60)
    subject = tokens.subject(tokens.issue(Users(engine).principal(user_id)))
    done = submit(engine, database_url, Credentials(token_user=subject))
    assert done is not None and done.principal.user_id == user_id and done.principal.key_id is None


def refused_caller(engine: sa.Engine, case: str, user_id: str, credentials: Credentials) -> tuple[Credentials, dict]:
    """The credentials and call arguments of a caller that ``case`` makes refusable (unchanged for the
    cases that are not about the caller)."""
    kwargs: dict = {}
    if case == "wrong key":
        credentials = Credentials(key_prefix=credentials.key_prefix, key_hash="0" * 64)
    elif case == "revoked key":
        ApiKeys(engine).revoke(ApiKeys(engine).list(user_id)[0]["id"])
    elif case == "erased account":
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET deleted_at = now() WHERE id = :u"), {"u": user_id})
    elif case == "unknown token user":
        credentials = Credentials(token_user="u_nobody")
    elif case == "rate limit":
        kwargs["rate_limit"] = 0
    return credentials, kwargs


@pytest.mark.parametrize("case", ["wrong key", "revoked key", "erased account", "unknown token user",
                                  "rate limit", "support", "read-only key", "priority", "callback without secret",
                                  "idempotency key used", "active jobs", "credits", "invalid request",
                                  "no reservation"])
def test_any_refusal_leaves_no_trace(engine, database_url, case):
    role = "support" if case == "support" else "user"
    scopes = ("read",) if case == "read-only key" else ("read", "write")
    user_id, credentials = account(engine, role=role, credits="0.01" if case == "credits" else "10", scopes=scopes)
    credentials, kwargs = refused_caller(engine, case, user_id, credentials)
    if case == "priority":
        kwargs["priority"] = 5
    elif case == "callback without secret":
        kwargs["callback_url"] = "https://example.com/hook"
    elif case == "idempotency key used":
        JobStore(engine).submissions.submit(JobRequest(user_id=user_id, prompt="first", idempotency_key="k"))
        kwargs["idempotency_key"] = "k"
    elif case == "active jobs":
        JobStore(engine).submissions.submit(JobRequest(user_id=user_id, prompt="already waiting"))
        kwargs["max_active"] = 1
    elif case == "invalid request":
        kwargs["width"] = 65
    elif case == "no reservation":
        kwargs["reserve"] = False
    before = traces(engine, user_id)
    assert submit(engine, database_url, credentials, **kwargs) is None
    assert traces(engine, user_id) == before


def test_an_admin_may_set_a_priority_and_a_user_with_a_secret_a_callback(engine, database_url):
    _, credentials = account(engine, role="admin")
    assert submit(engine, database_url, credentials, priority=5).job["priority"] == 5
    user_id, credentials = account(engine)
    Users(engine).rotate_webhook_secret(user_id)
    done = submit(engine, database_url, credentials, callback_url="https://example.com/hook")
    assert done.job["callback_url"] == "https://example.com/hook"


# ── GET /jobs/{id}: api_read_job() (migration 0010) ─────────────────────────────────────────────────
def test_a_read_with_nothing_to_refuse_answers_what_the_general_path_reads(engine, database_url):
    user_id, credentials = account(engine)
    JobStore(engine).submissions.submit(JobRequest(user_id="someone else", prompt="ahead in the queue"))
    job_id = submit(engine, database_url, credentials).job["id"]
    hits = traces(engine, user_id)["hits"]
    done = read(engine, database_url, credentials, job_id)
    assert done is not None and done.principal.user_id == user_id and done.principal.key_id is not None
    job, position = JobPageReads(engine).with_queue_position(job_id)
    assert (done.job, done.queue_position) == (job, position) and position == 1
    assert traces(engine, user_id)["hits"] == hits + 1
    with engine.begin() as conn:  # a job that is not waiting has no position
        conn.execute(sa.text("UPDATE jobs SET status = 'running' WHERE id = :j"), {"j": job_id})
    done = read(engine, database_url, credentials, job_id)
    assert (done.job["status"], done.queue_position) == ("running", None)


def test_a_film_s_storyboard_reads_back_as_the_general_path_reads_it(engine, database_url):
    user_id, credentials = account(engine)
    storyboard = {"scenes": [{"prompt": "a fox wakes", "duration_s": 1}], "voice": "rms"}
    with engine.begin() as conn:
        job_id = conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, storyboard) VALUES (:u, 'film', "
                                      "CAST(:s AS jsonb)) RETURNING id"),
                              {"u": user_id, "s": json.dumps(storyboard)}).scalar_one()
    done = read(engine, database_url, credentials, job_id)
    assert done.job["storyboard"] == storyboard
    assert done.job == JobPageReads(engine).with_queue_position(job_id)[0]


def test_a_write_only_key_reads_its_own_jobs_as_on_the_general_path(engine, database_url):
    _, credentials = account(engine, scopes=("write",))
    job_id = submit(engine, database_url, credentials).job["id"]
    assert read(engine, database_url, credentials, job_id).job["id"] == job_id


@pytest.mark.parametrize("role", ["support", "admin"])
def test_staff_read_anyone_s_job_in_one_trip(engine, database_url, role):
    _, owner = account(engine)
    job_id = submit(engine, database_url, owner).job["id"]
    staff_id, staff = account(engine, role=role, scopes=("read",))
    done = read(engine, database_url, staff, job_id)
    assert done is not None and done.job["id"] == job_id and done.principal.user_id == staff_id


@pytest.mark.parametrize("case", ["wrong key", "revoked key", "erased account", "unknown token user", "rate limit",
                                  "missing job", "another user's job"])
def test_any_refused_read_leaves_no_trace(engine, database_url, case):
    user_id, credentials = account(engine)
    _, other = account(engine)
    job_id = submit(engine, database_url, credentials).job["id"]
    credentials, kwargs = refused_caller(engine, case, user_id, credentials)
    if case == "missing job":
        job_id += 1000
    elif case == "another user's job":
        job_id = submit(engine, database_url, other).job["id"]
    before = traces(engine, user_id)
    assert read(engine, database_url, credentials, job_id, **kwargs) is None
    assert traces(engine, user_id) == before
