"""Submitting a request: one ``jobs`` row (``pending``, or ``rejected`` with the reason)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from videogen.accounts.credits import reserve_for_job
from videogen.db.schema import REQUEST_PARAMETERS, job_events, jobs, users
from videogen.errors import AuthenticationError, ConflictError, RateLimitedError, ValidationError
from videogen.generation.registry import ModelRegistry
from videogen.validation import ValidatedRequest, validate_request


@dataclass(frozen=True)
class JobRequest:
    """What a client submits. Parameters left as None take the model's defaults."""

    user_id: str
    prompt: Any
    negative_prompt: Any = ""
    model: Any = None
    width: Any = None
    height: Any = None
    num_frames: Any = None
    fps: Any = None
    steps: Any = None
    guidance_scale: Any = None
    seed: Any = None
    quality_preset: Any = None
    priority: int = 0
    idempotency_key: str | None = None
    callback_url: str | None = None  # checked by the caller (videogen.webhooks.check_callback_url)
    storyboard: Any = None  # a film (videogen.film.storyboard): JSON text or a decoded object
    audio_prompt_key: str | None = None  # a spoken prompt in the bucket, transcribed by the run


@dataclass(frozen=True)
class Submission:
    job_id: int
    status: str
    created: bool  # False when the idempotency key matched an existing job
    error_code: str | None = None
    error_message: str | None = None
    credits: Decimal | None = None  # reserved from the user's balance (API submissions)


@dataclass(frozen=True)
class Account:
    """Limits of an API account, applied in the submission's transaction (the CLI and SQL have none)."""

    reserve_credits: bool = True
    max_active_jobs: int | None = None
    # How long a client told "too many active jobs" should wait before trying again.
    active_jobs_retry_after_s: int = 5


def _storable(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL or undecodable bytes; keep a readable copy of the request."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        value = value.replace("\x00", "\ufffd")
    return value


def _as_text(value: Any) -> str | None:
    return None if value is None else str(_storable(value))


def with_spoken_prompt(raw: dict[str, Any]) -> dict[str, Any]:
    """A request with an audio prompt and no typed prompt, as it is checked and priced before the run
    transcribes it: the price does not depend on the words, and the transcript is checked once it exists."""
    if raw.get("audio_prompt_key") and not (isinstance(raw.get("prompt"), str) and raw["prompt"].strip()):
        return {**raw, "prompt": "(the transcript of the audio prompt)"}
    return raw


def validate_any(raw: dict[str, Any], registry: ModelRegistry, *, seed_if_missing: int = 0) -> ValidatedRequest:
    """Validate a request as submitted: a clip, a film when it has a storyboard (its parameters, priced as
    the sum of its scenes), or a spoken prompt before its transcript exists."""
    raw = with_spoken_prompt(raw)
    if raw.get("storyboard") is not None:
        from videogen.film.plan import validate_film

        return validate_film(raw, registry, seed_if_missing=seed_if_missing).request
    return validate_request(raw, registry, seed_if_missing=seed_if_missing)


def price_of(raw: dict[str, Any], registry: ModelRegistry) -> Decimal:
    """Validate a request (see :func:`validate_any`) and return its price in credits."""
    return validate_any(raw, registry).credits


def storable_storyboard(raw: Any) -> Any:
    """A storyboard as the JSONB column stores it: a decoded document (text that is not JSON is kept as
    a JSON string, so the run rejects it with the parser's message instead of the insert failing)."""
    import json

    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return _storable(raw)
    # PostgreSQL's JSONB refuses NUL characters (\u0000) and NaN/Infinity: such a document is kept as
    # text, and validation rejects it with its reason.
    try:
        return json.loads(json.dumps(raw, allow_nan=False).replace("\\u0000", "\\ufffd"))
    except ValueError:
        return _storable(json.dumps(raw))


def row_values(request: JobRequest) -> dict[str, Any]:
    """The ``jobs`` columns a request sets (a parameter left as None takes the column's default)."""
    values = {
        "prompt": _as_text(request.prompt) or "",
        "negative_prompt": _as_text(request.negative_prompt) or "",
        "priority": int(request.priority),
        "idempotency_key": request.idempotency_key,
        "callback_url": request.callback_url,
    }
    for name in REQUEST_PARAMETERS:
        raw = getattr(request, name)
        if raw is not None:
            values[name] = _as_text(raw)
    return values


def lock_user(conn: sa.Connection, user_id: str) -> None:
    """One submission (or retry, or erasure) of a user at a time until the transaction ends: the
    active-jobs count and the balance check cannot both pass for two concurrent requests."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(user_id))))


def check_active_jobs(conn: sa.Connection, user_id: str, account: Account) -> None:
    """RateLimitedError when one more active job would take the user past the active-jobs cap.

    The count is the account's ``active_jobs``, kept by triggers on ``jobs`` (migration 0011): one
    row read, whatever the cap and the backlog. A user id without an account has no cap to check."""
    active = conn.execute(sa.select(users.c.active_jobs).where(users.c.id == user_id)).scalar_one_or_none()
    if active is not None and active >= account.max_active_jobs:
        raise RateLimitedError(
            f"{active} of your jobs are pending, queued or running (the limit is {account.max_active_jobs}); "
            "submit again when one has finished", retry_after_s=account.active_jobs_retry_after_s,
            code="too_many_active_jobs")


class JobSubmissions:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def submit(self, request: JobRequest, registry: ModelRegistry | None = None,
               account: Account | None = None) -> Submission:
        """Insert a job. With a registry, validate first: an invalid request is stored as ``rejected``.

        With an ``account`` (API submissions; needs a registry), a valid job also reserves its price
        from the user's balance and counts against their active-jobs cap, in the insert's
        transaction: :class:`InsufficientCreditsError` or :class:`RateLimitedError` then leave no row.
        """
        if account is not None and registry is None:
            raise ValueError("an account's limits need a registry to price the job")
        if isinstance(request.storyboard, str) and not request.storyboard.strip():
            request = replace(request, storyboard=None)  # an empty form field: a clip
        user_id = str(_storable(request.user_id or "")).strip()
        if not user_id:
            raise ValidationError("user_id is empty; say who submits the job", code="empty_user_id")
        error: ValidationError | None = None
        price: Decimal | None = None
        if registry is not None:
            try:
                price = price_of(request.__dict__, registry)
            except ValidationError as exc:
                error = exc
        values = {"user_id": user_id, **row_values(request)}
        if request.storyboard is not None:
            values["storyboard"] = storable_storyboard(request.storyboard)
        if request.audio_prompt_key is not None:
            from videogen.storage.base import validate_key

            try:
                values["audio_prompt_key"] = validate_key(str(request.audio_prompt_key))
            except ValueError as exc:
                raise ValidationError(f"audio_prompt_key: {exc}", code="invalid_audio_prompt",
                                      field="audio_prompt") from None
        if error is not None:
            values.update(status="rejected", stage="validate", error_code=error.code,
                          error_message=error.message, finished_at=sa.func.now())
        with self.engine.begin() as conn:
            if account is not None:
                lock_user(conn, user_id)
                # Under the same lock an erasure takes: an account erased after the request was
                # authenticated gets no job (not even a rejected one) under its old id.
                if conn.execute(sa.select(users.c.id).where(users.c.id == user_id,
                                                            users.c.deleted_at.is_(None))).first() is None:
                    raise AuthenticationError("the account of this key or token no longer exists",
                                              code="invalid_token")
            if request.idempotency_key is not None:
                existing = self._by_idempotency_key(conn, user_id, request.idempotency_key)
                if existing is not None:
                    self._check_same_request(conn, existing.job_id, values, request.idempotency_key)
                    return existing
            if account is not None and error is None and account.max_active_jobs is not None:
                check_active_jobs(conn, user_id, account)
            row = conn.execute(
                pg_insert(jobs).values(**values)
                .on_conflict_do_nothing(constraint="jobs_user_idempotency_key")
                .returning(jobs.c.id, jobs.c.status)
            ).first()
            if row is None:  # a concurrent submit with the same key won the race
                existing = self._by_idempotency_key(conn, user_id, request.idempotency_key)
                assert existing is not None
                return existing
            if error is not None:
                conn.execute(job_events.insert().values(job_id=row.id, status="rejected", stage="validate",
                                                        message=f"{error.code}: {error.message}"))
            reserved = None
            if account is not None and error is None and account.reserve_credits:
                reserve_for_job(conn, user_id=user_id, job_id=row.id, submission=0, amount=price)
                reserved = price
        return Submission(row.id, row.status, True, error.code if error else None, error.message if error else None,
                          reserved)

    @staticmethod
    def _check_same_request(conn: sa.Connection, job_id: int, values: dict[str, Any], key: str) -> None:
        """An idempotency key names one request: the same key with another prompt is a client bug, not
        a replay (parameters are not compared: the run writes their normalized form back)."""
        stored = conn.execute(sa.select(jobs.c.prompt, jobs.c.negative_prompt).where(jobs.c.id == job_id)).one()
        if (stored.prompt, stored.negative_prompt) != (values["prompt"], values["negative_prompt"]):
            raise ConflictError(f"Idempotency-Key {key[:60]!r} was used for another request (job {job_id}); "
                                "use a new key for a new request", code="idempotency_key_reused")

    @staticmethod
    def _by_idempotency_key(conn: sa.Connection, user_id: str, key: str | None) -> Submission | None:
        existing = conn.execute(
            sa.select(jobs.c.id, jobs.c.status, jobs.c.error_code, jobs.c.error_message).where(
                jobs.c.user_id == user_id, jobs.c.idempotency_key == key)
        ).first()
        if existing is None:
            return None
        return Submission(existing.id, existing.status, False, existing.error_code, existing.error_message)
