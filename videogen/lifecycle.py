"""The request lifecycle over the ``jobs`` and ``job_events`` tables.

Every status change is a conditional UPDATE (``WHERE status IN (allowed sources)``) plus an INSERT
into ``job_events`` in the same transaction, so the audit trail never disagrees with the row and two
actors (a run and a ``videogen cancel``, say) can never both win a transition.

    pending ──► queued ──► running ──► succeeded
       │          │          ├──────► failed ──(retry)──► pending
       │          │          └──────► rejected
       └──────────┴──────────┴──────► canceled ──(retry)──► pending
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from videogen.db.schema import ACTIVE_STATUSES, REQUEST_PARAMETERS, TERMINAL_STATUSES, job_events, jobs
from videogen.errors import InvalidTransitionError, JobNotFoundError, ValidationError
from videogen.generation.registry import ModelRegistry
from videogen.validation import ValidatedRequest, validate_request

# Which statuses each target status may be reached from.
ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    "queued": frozenset({"pending"}),
    # A run may start before the sensor has recorded `queued` (it confirms on its next tick).
    "running": frozenset({"pending", "queued", "running"}),
    "succeeded": frozenset({"running"}),
    "failed": frozenset({"pending", "queued", "running"}),
    "rejected": frozenset({"pending", "queued", "running"}),
    "canceled": frozenset({"pending", "queued", "running"}),
    "pending": frozenset({"failed", "canceled", "running", "queued"}),
}


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


@dataclass(frozen=True)
class Submission:
    job_id: int
    status: str
    created: bool  # False when the idempotency key matched an existing job
    error_code: str | None = None
    error_message: str | None = None


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


class JobStore:
    """Typed access to jobs; all methods take and release their own connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ── submission ──────────────────────────────────────────────────────────────
    def submit(self, request: JobRequest, registry: ModelRegistry | None = None) -> Submission:
        """Insert a job. With a registry, validate first: an invalid request is stored as ``rejected``."""
        user_id = str(_storable(request.user_id or "")).strip()
        if not user_id:
            raise ValidationError("user_id is empty; say who submits the job", code="empty_user_id")
        error: ValidationError | None = None
        if registry is not None:
            try:
                validate_request(request.__dict__, registry, seed_if_missing=0)
            except ValidationError as exc:
                error = exc
        values = {
            "user_id": user_id,
            "prompt": _as_text(request.prompt) or "",
            "negative_prompt": _as_text(request.negative_prompt) or "",
            "priority": int(request.priority),
            "idempotency_key": request.idempotency_key,
        }
        for name in REQUEST_PARAMETERS:
            raw = getattr(request, name)
            if raw is not None:
                values[name] = _as_text(raw)
        if error is not None:
            values.update(status="rejected", stage="validate", error_code=error.code,
                          error_message=error.message, finished_at=sa.func.now())
        with self.engine.begin() as conn:
            if request.idempotency_key is not None:
                existing = conn.execute(
                    sa.select(jobs.c.id, jobs.c.status, jobs.c.error_code, jobs.c.error_message).where(
                        jobs.c.user_id == user_id, jobs.c.idempotency_key == request.idempotency_key
                    )
                ).first()
                if existing is not None:
                    return Submission(existing.id, existing.status, False, existing.error_code, existing.error_message)
            stmt = (
                sa.dialects.postgresql.insert(jobs)
                .values(**values)
                .on_conflict_do_nothing(constraint="jobs_user_idempotency_key")
                .returning(jobs.c.id, jobs.c.status)
            )
            row = conn.execute(stmt).first()
            if row is None:  # a concurrent submit with the same key won the race
                existing = conn.execute(
                    sa.select(jobs.c.id, jobs.c.status, jobs.c.error_code, jobs.c.error_message).where(
                        jobs.c.user_id == user_id, jobs.c.idempotency_key == request.idempotency_key
                    )
                ).one()
                return Submission(existing.id, existing.status, False, existing.error_code, existing.error_message)
            if error is not None:
                conn.execute(job_events.insert().values(job_id=row.id, status="rejected", stage="validate",
                                                        message=f"{error.code}: {error.message}"))
        return Submission(row.id, row.status, True, error.code if error else None, error.message if error else None)

    # ── reads ───────────────────────────────────────────────────────────────────
    def get(self, job_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        return dict(row)

    def events(self, job_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def list(
        self,
        *,
        status: str | None = None,
        user_id: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit).offset(offset)
        if status:
            query = query.where(jobs.c.status == status)
        if user_id:
            query = query.where(jobs.c.user_id == user_id)
        if created_from:
            query = query.where(jobs.c.created_at >= created_from)
        if created_to:
            query = query.where(jobs.c.created_at < created_to)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def status_of(self, job_id: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()

    # ── transitions ─────────────────────────────────────────────────────────────
    def transition(
        self,
        job_id: int,
        to_status: str,
        *,
        stage: str | None = None,
        message: str | None = None,
        run_id: str | None = None,
        from_statuses: Iterable[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        conn: sa.Connection | None = None,
    ) -> bool:
        """Move a job to ``to_status`` if its current status allows it. Returns whether it moved."""
        sources = frozenset(from_statuses) if from_statuses is not None else ALLOWED_SOURCES[to_status]
        values: dict[str, Any] = {"status": to_status, "updated_at": sa.func.now(), **(extra or {})}
        if stage is not None:
            values["stage"] = stage
        if run_id is not None:
            values["run_id"] = run_id
        if to_status in TERMINAL_STATUSES:
            values.setdefault("finished_at", sa.func.now())
        stmt = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status.in_(sources))
            .values(**values)
            .returning(jobs.c.id)
        )

        def apply(c: sa.Connection) -> bool:
            moved = c.execute(stmt).first() is not None
            if moved:
                c.execute(job_events.insert().values(job_id=job_id, status=to_status, stage=stage,
                                                     message=message, run_id=run_id))
            return moved

        if conn is not None:
            return apply(conn)
        with self.engine.begin() as c:
            return apply(c)

    def record_event(self, job_id: int, *, stage: str, message: str, run_id: str | None = None) -> None:
        """Append an audit event without changing the status (stage progress, retries)."""
        with self.engine.begin() as conn:
            status = conn.execute(
                jobs.update().where(jobs.c.id == job_id)
                .values(stage=stage, updated_at=sa.func.now())
                .returning(jobs.c.status)
            ).scalar()
            conn.execute(job_events.insert().values(job_id=job_id, status=status, stage=stage,
                                                    message=message, run_id=run_id))

    def heartbeat(self, job_id: int, run_id: str) -> str | None:
        """Prove the worker is alive; returns the job's status (so callers notice a cancel)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running",
                                             jobs.c.run_id == run_id)
                         .values(heartbeat_at=sa.func.now(), worker=f"{socket.gethostname()}:{os.getpid()}"))
            return conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()

    def add_gpu_seconds(self, job_id: int, seconds: float) -> None:
        """Meter GPU time as soon as it is spent (failed attempts consume GPU time too)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id)
                         .values(gpu_seconds=sa.func.coalesce(jobs.c.gpu_seconds, 0.0) + seconds))

    def set_progress(self, job_id: int, *, stage: str, progress: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running")
                         .values(stage=stage, progress=progress, updated_at=sa.func.now()))

    def mark_queued(self, job_id: int, run_id: str) -> bool:
        return job_id in self.mark_queued_many({job_id: run_id})

    def mark_queued_many(self, runs: Mapping[int, str]) -> list[int]:
        """Confirm many pending jobs as queued under their runs, in one transaction (a sensor tick)."""
        if not runs:
            return []
        pairs = sa.values(sa.column("job_id", sa.BigInteger), sa.column("run_id", sa.Text), name="v").data(
            list(runs.items()))
        with self.engine.begin() as conn:
            moved = conn.execute(
                jobs.update()
                .where(jobs.c.id == pairs.c.job_id, jobs.c.status == "pending")
                .values(status="queued", stage="queue", run_id=pairs.c.run_id, queued_at=sa.func.now(),
                        updated_at=sa.func.now())
                .returning(jobs.c.id, jobs.c.run_id)
            ).all()
            if moved:
                conn.execute(job_events.insert(), [
                    {"job_id": row.id, "status": "queued", "stage": "queue", "run_id": row.run_id,
                     "message": f"run {row.run_id} requested"} for row in moved])
        return [row.id for row in moved]

    def start_attempt(self, job_id: int, run_id: str) -> dict[str, Any] | None:
        """Claim the job for a run: ``running``, attempts + 1. None when the job must not run (canceled…).

        A job that is already ``running`` under another run that is still alive is not claimed
        (``claimable_running_runs`` is how callers allow re-claiming one whose run died).
        """
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(jobs).where(jobs.c.id == job_id).with_for_update()
            ).mappings().first()
            if row is None:
                raise JobNotFoundError(f"job {job_id} does not exist")
            if row["status"] not in ("pending", "queued", "failed") and not (
                row["status"] == "running" and row["run_id"] == run_id
            ):
                return None
            if row["status"] == "failed":
                # A re-execution from the UI (partition re-run or backfill of failed partitions).
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                    error_code=None, error_message=None, output_uri=None, thumbnail_uri=None))
            extra = {"attempts": jobs.c.attempts + 1, "progress": 0.0, "not_before": None,
                     "heartbeat_at": sa.func.now()}
            if row["started_at"] is None or row["status"] == "failed":
                extra["started_at"] = sa.func.now()
            moved = self.transition(
                job_id, "running", stage="validate", run_id=run_id, message=f"run {run_id} started",
                from_statuses=("pending", "queued", "failed", "running"), extra=extra, conn=conn,
            )
            if not moved:
                return None
            return dict(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().one())

    def save_validated(self, job_id: int, request: ValidatedRequest) -> None:
        """Write the normalized parameters back, so the row shows what is generated (seed included)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                model=request.model, width=str(request.width), height=str(request.height),
                num_frames=str(request.num_frames), fps=str(request.fps), steps=str(request.steps),
                guidance_scale=repr(request.guidance_scale), seed=str(request.seed),
                quality_preset=request.quality_preset, credits=request.credits, updated_at=sa.func.now()))

    def reject(self, job_id: int, error: ValidationError, run_id: str | None = None) -> bool:
        return self.transition(job_id, "rejected", stage="validate", run_id=run_id,
                               message=f"{error.code}: {error.message}",
                               extra={"error_code": error.code, "error_message": error.message})

    def fail(self, job_id: int, *, code: str, message: str, run_id: str | None = None,
             stage: str | None = None) -> bool:
        return self.transition(job_id, "failed", stage=stage, run_id=run_id, message=f"{code}: {message}",
                               extra={"error_code": code, "error_message": message})

    def succeed(self, job_id: int, *, run_id: str, output_uri: str, thumbnail_uri: str,
                output_size_bytes: int, output_sha256: str, credits: Decimal | None = None) -> bool:
        extra: dict[str, Any] = dict(
            output_uri=output_uri, thumbnail_uri=thumbnail_uri, output_size_bytes=output_size_bytes,
            output_sha256=output_sha256, progress=1.0,
            error_code=None, error_message=None,
        )
        if credits is not None:
            extra["credits"] = credits
        return self.transition(job_id, "succeeded", stage="done", run_id=run_id,
                               message=f"stored at {output_uri}", extra=extra)

    # ── operator actions ────────────────────────────────────────────────────────
    def cancel(self, job_id: int) -> str:
        """Cancel a pending, queued or running job. Returns the new status; raises if not cancelable."""
        moved = self.transition(job_id, "canceled", stage="cancel_requested", message="canceled by request",
                                extra={"error_code": "canceled", "error_message": "canceled by request"})
        if not moved:
            status = self.status_of(job_id)
            if status is None:
                raise JobNotFoundError(f"job {job_id} does not exist")
            raise InvalidTransitionError(f"job {job_id} is {status}; only pending, queued or running jobs can be canceled")
        return "canceled"

    def retry(self, job_id: int) -> int:
        """Send a failed or canceled job back to ``pending`` under a new submission (a new run key)."""
        moved = self.transition(
            job_id, "pending", stage="submit", message="resubmitted by request",
            from_statuses=("failed", "canceled"),
            extra={"submission": jobs.c.submission + 1, "run_id": None, "error_code": None,
                   "error_message": None, "finished_at": None, "queued_at": None, "started_at": None,
                   "progress": 0.0, "output_uri": None, "thumbnail_uri": None, "output_size_bytes": None,
                   "output_sha256": None, "not_before": None},
        )
        if not moved:
            status = self.status_of(job_id)
            if status is None:
                raise JobNotFoundError(f"job {job_id} does not exist")
            raise InvalidTransitionError(
                f"job {job_id} is {status}; only failed or canceled jobs can be retried"
                + (" (a rejected request must be corrected and submitted again)" if status == "rejected" else "")
            )
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.submission).where(jobs.c.id == job_id)).scalar_one()

    def resubmit_after_worker_death(self, job_id: int, *, run_id: str, delay_s: float, reason: str) -> bool:
        """A run died without reporting: queue the job again after a backoff (a new run key)."""
        return self.transition(
            job_id, "pending", stage="submit", run_id=None, from_statuses=("queued", "running"),
            message=f"{reason}; resubmitted, next attempt in {delay_s:g} s",
            extra={"submission": jobs.c.submission + 1, "run_id": None, "progress": 0.0,
                   "not_before": sa.func.now() + timedelta(seconds=delay_s)},
        )

    # ── sensor queries ──────────────────────────────────────────────────────────
    def pending_batch(self, limit: int) -> list[dict[str, Any]]:
        """Pending jobs in fair order: round-robin over users, oldest first within a user.

        Status-driven (no id cursor), so a row that commits late with a lower id is found on the
        next tick. The round-robin keeps one user's backlog of thousands of rows from delaying
        every other user's first request (the run queue itself is FIFO within a priority).
        """
        ready = (
            sa.select(
                jobs.c.id, jobs.c.user_id, jobs.c.model, jobs.c.priority, jobs.c.submission,
                sa.func.row_number().over(partition_by=jobs.c.user_id, order_by=jobs.c.id).label("user_rank"),
            )
            .where(jobs.c.status == "pending",
                   sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.func.now()))
            .subquery()
        )
        query = (
            sa.select(ready.c.id, ready.c.user_id, ready.c.model, ready.c.priority, ready.c.submission)
            .order_by(ready.c.user_rank, ready.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def active_jobs(self, limit: int) -> list[dict[str, Any]]:
        """Queued or running jobs with a run id, least recently updated first (for reconciliation)."""
        query = (
            sa.select(jobs.c.id, jobs.c.status, jobs.c.run_id, jobs.c.attempts, jobs.c.updated_at,
                      jobs.c.heartbeat_at, (sa.func.now() - jobs.c.heartbeat_at).label("heartbeat_age"))
            .where(jobs.c.status.in_(sorted(ACTIVE_STATUSES)), jobs.c.run_id.is_not(None))
            .order_by(jobs.c.updated_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def canceled_with_live_run(self, limit: int) -> list[dict[str, Any]]:
        """Canceled jobs whose run has not been stopped yet (stage still ``cancel_requested``)."""
        query = (
            sa.select(jobs.c.id, jobs.c.run_id)
            .where(jobs.c.status == "canceled", jobs.c.stage == "cancel_requested")
            .order_by(jobs.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def mark_cancel_propagated(self, job_id: int, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.stage == "cancel_requested")
                         .values(stage="canceled", updated_at=sa.func.now()))
            conn.execute(job_events.insert().values(job_id=job_id, status="canceled", stage="canceled",
                                                    message=message))


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31)


def run_key(job_id: int, submission: int) -> str:
    """The sensor's run key: the job id, plus the submission number once a job was resubmitted."""
    return str(job_id) if submission == 0 else f"{job_id}-r{submission}"

