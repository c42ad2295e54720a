"""API calls that have nothing to refuse, in one database round trip each.

``POST /api/v1/jobs`` needs the caller's key or account, a per-user rate-limit count, the submission
(lock, idempotency, active-jobs cap, credit reservation, insert) and the job's queue position. The
general path (:mod:`videogen.lifecycle.submission` behind ``api.deps.caller``) takes three
transactions and a dozen statements for that; :meth:`OneTripCalls.submit` calls ``api_submit_job()``
(migration 0007), which runs the same steps in the same order in one statement. ``GET
/api/v1/jobs/{id}`` likewise: the caller and their count, the job, that they may see it, its queue
position, in ``api_read_job()`` (migration 0010) through :meth:`OneTripCalls.read_job`. Both run over
an asyncpg pool, so that the API's event loop does not hand each request to a worker thread.

Submissions that arrive while every connection is busy wait together and go to the database in one
statement, ``api_submit_jobs()`` (migration 0012), which runs ``api_submit_job()`` for each of them
in a subtransaction of its own (:class:`SubmissionBatches`): one transaction and one round trip for
several submissions. A batch that fails as a whole for any other reason than a refusal is sent
again one submission at a time, so that only the submission at fault fails.

A function succeeds only when no step refuses. Otherwise it raises SQLSTATE ``VGS01``, its
statement rolls back entirely (the rate-limit count too), and the method returns None: the caller
then runs the general path from the start, which counts the request once and answers with the
refusal's own status and message. Everything the functions cannot decide (an invalid request to
store as ``rejected``, a repeated Idempotency-Key, a job that is missing or someone else's, any
refusal) therefore keeps exactly one implementation.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy as sa

from videogen.accounts.ratelimit import SharedRateLimiter
from videogen.accounts.users import Principal
from videogen.db.schema import REQUEST_PARAMETERS, jobs
from videogen.errors import ValidationError
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle.submission import Account, JobRequest, row_values
from videogen.validation import validate_request

SUBMIT_FUNCTION = "api_submit_job"  # migration 0007
BATCH_FUNCTION = "api_submit_jobs"  # migration 0012
# Under the 64 subtransactions a backend lists in shared memory (one per element): past them, every
# snapshot in the cluster gets slower.
MAX_BATCH = 32
GENERAL_PATH_SQLSTATE = "VGS01"  # raised by the function: "let the general path answer"
_ARGUMENTS = ("key_prefix", "key_hash", "token_user", "window", "rate_limit", "cleanup_before", "max_active",
              "price", "prompt", "negative_prompt", *REQUEST_PARAMETERS, "priority", "idempotency_key",
              "callback_url")
_CALL = (f"SELECT * FROM {SUBMIT_FUNCTION}("
         + ", ".join(f"p_{name} => ${i}" for i, name in enumerate(_ARGUMENTS, start=1)) + ")")
# What the submissions of a batch share; every other argument is an array, one element each.
_SHARED = ("window", "rate_limit", "cleanup_before", "max_active")
_ELEMENT = tuple(name for name in _ARGUMENTS if name not in _SHARED)
_BATCH_CALL = (f"SELECT * FROM {BATCH_FUNCTION}("
               + ", ".join(f"p_{name} => ${i}" for i, name in enumerate(_ARGUMENTS, start=1)) + ")")
READ_FUNCTION = "api_read_job"  # migration 0010
_READ_CALL = (f"SELECT * FROM {READ_FUNCTION}(p_key_prefix => $1, p_key_hash => $2, p_token_user => $3, "
              "p_window => $4, p_rate_limit => $5, p_cleanup_before => $6, p_job_id => $7)")
# asyncpg hands JSON inside a composite (the ``jobs`` row) over as its text; a codec cannot help
# (composites are decoded in binary, a text codec then refuses), so these are parsed after the call.
_JSON_COLUMNS = tuple(c.name for c in jobs.c if isinstance(c.type, sa.JSON))
# What a column left out of the INSERT gets: the function names every column, so it is given these.
_COLUMN_DEFAULTS = {name: jobs.c[name].server_default.arg for name in ("model", "quality_preset")}


@dataclass(frozen=True)
class Credentials:
    """What a request presented, not yet checked against the database: an API key's prefix and the
    SHA-256 stored for it, or the user id of an access token whose signature and expiry were checked."""

    key_prefix: str | None = None
    key_hash: str | None = None
    token_user: str | None = None


@dataclass(frozen=True)
class Answered:
    principal: Principal
    job: dict[str, Any]  # the ``jobs`` row: the new one for a submission
    queue_position: int | None  # None when the job is not waiting


def asyncpg_dsn(database_url: str) -> str:
    """The libpq URL asyncpg takes, from a SQLAlchemy URL (``postgresql+psycopg2://…``) or a libpq one."""
    return sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset between uses: one statement in its own transaction, whose advisory lock is
    transaction-scoped, and no session settings. (asyncpg's default reset is a second round trip
    per request: RESET ALL, UNLISTEN *, pg_advisory_unlock_all().)"""


class OneTripCalls:
    """``api_submit_job()`` and ``api_read_job()`` over a pool of asyncpg connections, opened on first use in the running loop
    (each uvicorn worker has its own loop and pool)."""

    def __init__(self, database_url: str, *, limiter: SharedRateLimiter, registry: ModelRegistry,
                 account: Account, max_connections: int = 10) -> None:
        self.dsn, self.limiter, self.registry, self.account = asyncpg_dsn(database_url), limiter, registry, account
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._batches: SubmissionBatches | None = None
        self._opening: asyncio.Lock | None = None

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_connections,
                                                           reset=_keep_session)
        return self._pool

    async def close(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
            self._batches = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def submit(self, credentials: Credentials, request: JobRequest) -> Answered | None:
        """Submit ``request`` as whoever ``credentials`` name, or None when the general path must
        answer (the request's ``user_id`` is not used: the function takes the credentials' account).
        Sent with the submissions waiting for a connection at the same moment, if any."""
        if not self.account.reserve_credits or request.storyboard is not None or request.audio_prompt_key is not None:
            return None  # films and audio prompts: checks of their own (uploads, scenes) on the general path
        try:
            price = validate_request(request.__dict__, self.registry, seed_if_missing=0).credits
        except ValidationError:
            return None  # stored as rejected by the general path
        values = {**_COLUMN_DEFAULTS, **row_values(request)}
        element = {"key_prefix": credentials.key_prefix, "key_hash": credentials.key_hash,
                   "token_user": credentials.token_user, "price": price,
                   **{name: values.get(name) for name in _ARGUMENTS[8:]}}
        if self._batches is None:
            self._batches = SubmissionBatches(self._submit_batch, self.max_connections, MAX_BATCH)
        return await self._batches.add(element)

    async def _submit_batch(self, elements: list[dict[str, Any]]) -> list[Answered | None | Exception]:
        """Each element's answer, or the exception its own statement raised."""
        shared = {**self._count(), "max_active": self.account.max_active_jobs}
        if len(elements) > 1:
            pool = await self._connections()
            arrays = {name: [element[name] for element in elements] for name in _ELEMENT}
            try:
                rows = await pool.fetch(_BATCH_CALL, *({**shared, **arrays}[name] for name in _ARGUMENTS))
            except asyncpg.PostgresError:
                pass  # not a refusal (those are caught per element): one at a time, so only its cause fails
            else:
                answers: list[Answered | None | Exception] = [None] * len(elements)
                for row in rows:
                    answers[row["ord"] - 1] = _answered(row)
                return answers
        answers = []
        for element in elements:
            try:
                answers.append(await self._call(_CALL, *({**shared, **element}[name] for name in _ARGUMENTS)))
            except Exception as exc:  # noqa: BLE001 - this submission's own failure, handed to its caller
                answers.append(exc)
        return answers

    async def read_job(self, credentials: Credentials, job_id: int) -> Answered | None:
        """The job ``job_id`` as whoever ``credentials`` name may see it, with its queue position, or
        None when the general path must answer (a job that is missing or not theirs among others)."""
        counted = self._counted(credentials)
        return await self._call(_READ_CALL, *counted.values(), job_id)

    def _counted(self, credentials: Credentials) -> dict[str, Any]:
        """The arguments both functions start with, in their order: who calls, and their count."""
        return {"key_prefix": credentials.key_prefix, "key_hash": credentials.key_hash,
                "token_user": credentials.token_user, **self._count()}

    def _count(self) -> dict[str, Any]:
        """The rate-limit arguments of every call (and of a batch, shared): this moment's window."""
        window = self.limiter.window(time.time())
        return {"window": window, "rate_limit": self.limiter.limit, "cleanup_before": self.limiter.cleanup_before(window)}

    async def _call(self, statement: str, *arguments: Any) -> Answered | None:
        pool = await self._connections()
        try:
            row = await pool.fetchrow(statement, *arguments)
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == GENERAL_PATH_SQLSTATE:
                return None
            raise
        return _answered(row)


def _answered(row: asyncpg.Record) -> Answered:
    principal = Principal(row["user_id"], row["email"], row["role"], frozenset(row["scopes"]), row["key_id"])
    job = dict(row["job"])
    for name in _JSON_COLUMNS:  # as psycopg2 gives them to the general path (a film's storyboard)
        if isinstance(job[name], str):
            job[name] = json.loads(job[name])
    return Answered(principal, job, row["queue_position"])


class SubmissionBatches:
    """Submissions that arrive while ``senders`` batches are on their way wait together; the next
    free sender takes up to ``max_batch`` of them at once. A lone submission goes at once, alone.

    ``send(elements)`` answers each element (a result, or the exception of that element alone). A
    caller that stops waiting (its client left) before its batch is sent is dropped from it."""

    def __init__(self, send, senders: int, max_batch: int) -> None:
        self.send, self.senders, self.max_batch = send, senders, max_batch
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self._busy = 0
        self._tasks: set[asyncio.Task] = set()

    async def add(self, element: Any) -> Any:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((element, answer))
        if self._busy < self.senders:
            self._busy += 1
            task = asyncio.create_task(self._sender())
            self._tasks.add(task)  # a reference until it ends: the loop keeps only weak ones
            task.add_done_callback(self._tasks.discard)
        result = await answer
        if isinstance(result, Exception):
            raise result
        return result

    async def _sender(self) -> None:
        try:
            while self._waiting:
                batch = [(element, answer) for element, answer in self._waiting[:self.max_batch] if not answer.done()]
                del self._waiting[:self.max_batch]
                if not batch:
                    continue
                try:
                    results = await self.send([element for element, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} answers to a batch of {len(batch)} submissions")
                except Exception as exc:  # noqa: BLE001 - the whole batch (say, a closed pool): all callers hear of it
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                except BaseException:  # this sender is canceled (the loop shuts down): so are its callers
                    for _, answer in batch:
                        answer.cancel()
                    raise
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():
                        answer.set_result(result)
        finally:
            self._busy -= 1

    async def aclose(self) -> None:
        """Stop the senders; their callers, and those still waiting, are canceled."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, answer in self._waiting:
            answer.cancel()
        self._waiting.clear()
