"""What a run does to its job: claim it, report progress, heartbeats and metering, then the outcome."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from videogen.accounts.credits import reserve_again
from videogen.db.schema import job_events, jobs
from videogen.errors import JobNotFoundError, ValidationError
from videogen.lifecycle.transitions import apply_transition
from videogen.validation import ValidatedRequest

# Cleared when an operator re-executes a failed job: the new attempt starts from nothing.
_FAILED_ATTEMPT_RESET = {"error_code": None, "error_message": None, "output_uri": None, "thumbnail_uri": None,
                         "output_size_bytes": None, "output_sha256": None}


class JobRuns:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def claim(self, job_id: int, run_id: str, *, run_created_at: datetime | None = None) -> dict[str, Any] | None:
        """Claim the job for a run: ``running``, attempts + 1. None when the job must not run (canceled…).

        A run may start before the pending-jobs sensor has confirmed its row as ``queued`` (the
        sensor confirms on its next tick, and an idle queue starts a run at once). The claim then
        records ``queued`` itself, dated when the run was created (``run_created_at``, never later
        than now), so every run's job goes ``queued → running`` exactly once and in order; the
        sensor's late confirmation finds the row no longer ``pending`` and changes nothing.

        A job that is already ``running`` under another run is not claimed (the reconciliation
        sensor resubmits a job whose run died).
        """
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id).with_for_update()).mappings().first()
            if row is None:
                raise JobNotFoundError(f"job {job_id} does not exist")
            status = row["status"]
            if status in ("pending", "failed"):
                created = sa.func.now()
                if run_created_at is not None:
                    aware = run_created_at if run_created_at.tzinfo else run_created_at.replace(tzinfo=timezone.utc)
                    created = sa.func.least(sa.literal(aware, sa.DateTime(timezone=True)), sa.func.now())
                if status == "pending":
                    # Kept across automatic resubmissions, like started_at: the first time it was queued.
                    name, extra = "queue", {"queued_at": sa.func.coalesce(jobs.c.queued_at, created)}
                else:  # an operator re-executes a failed partition from the Dagster UI
                    # A new submission, like a retry: the failure refunded the job's reservation, so
                    # it reserves its price again (InsufficientCreditsError leaves the job failed).
                    name, extra = "requeue_failed", {"queued_at": created, "started_at": None,
                                                     "finished_at": None, "submission": jobs.c.submission + 1,
                                                     **_FAILED_ATTEMPT_RESET}
                apply_transition(conn, job_id, name, stage="queue", run_id=run_id, extra=extra,
                                 message=f"run {run_id} requested (recorded when the run started)")
                if name == "requeue_failed":
                    reserve_again(conn, job_id)
                status = "queued"
            start = {"attempts": jobs.c.attempts + 1, "progress": 0.0, "not_before": None,
                     "heartbeat_at": sa.func.now(), "started_at": sa.func.coalesce(jobs.c.started_at, sa.func.now())}
            if status == "queued":
                moved = apply_transition(conn, job_id, "start", stage="validate", run_id=run_id, extra=start,
                                         message=f"run {run_id} started")
            elif status == "running":
                moved = apply_transition(conn, job_id, "reclaim", stage="validate", run_id=run_id, extra=start,
                                         message=f"run {run_id} started again", where=jobs.c.run_id == run_id)
            else:
                moved = False
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

    def regenerate(self, job_id: int, *, run_id: str, seed: int, reason: str) -> bool:
        """A content QA gate failed: queue the job once more with a new seed (a new run key, no new
        reservation). False when it was regenerated before (once only) or the run no longer holds it."""
        with self.engine.begin() as conn:
            done_before = conn.execute(sa.select(job_events.c.id).where(
                job_events.c.job_id == job_id, job_events.c.stage == "regenerate").limit(1)).first()
            if done_before is not None:
                return False
            return apply_transition(
                conn, job_id, "regenerate", stage="regenerate",
                message=f"{reason}; generating once more with a new seed ({seed})",
                extra={"submission": jobs.c.submission + 1, "run_id": None, "progress": 0.0, "seed": str(seed)},
                where=jobs.c.run_id == run_id,
            )

    def save_transcript(self, job_id: int, transcript: str) -> None:
        """An audio prompt's transcript, which becomes the job's prompt."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                transcript=transcript, prompt=transcript, updated_at=sa.func.now()))

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

    def set_progress(self, job_id: int, *, stage: str, progress: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "running")
                         .values(stage=stage, progress=progress, updated_at=sa.func.now()))

    def add_gpu_seconds(self, job_id: int, seconds: float) -> None:
        """Meter GPU time as soon as it is spent (failed attempts consume GPU time too)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id)
                         .values(gpu_seconds=sa.func.coalesce(jobs.c.gpu_seconds, 0.0) + seconds))

    def reject(self, job_id: int, error: ValidationError, run_id: str | None = None) -> bool:
        with self.engine.begin() as conn:
            return apply_transition(conn, job_id, "reject", stage="validate", run_id=run_id,
                                    message=f"{error.code}: {error.message}",
                                    extra={"error_code": error.code, "error_message": error.message})

    def fail(self, job_id: int, *, code: str, message: str, run_id: str | None = None,
             stage: str | None = None) -> bool:
        with self.engine.begin() as conn:
            return apply_transition(conn, job_id, "fail", stage=stage, run_id=run_id, message=f"{code}: {message}",
                                    extra={"error_code": code, "error_message": message})

    def succeed(self, job_id: int, *, run_id: str, output_uri: str, thumbnail_uri: str,
                output_size_bytes: int, output_sha256: str, credits: Decimal | None = None) -> bool:
        extra: dict[str, Any] = dict(
            output_uri=output_uri, thumbnail_uri=thumbnail_uri, output_size_bytes=output_size_bytes,
            output_sha256=output_sha256, progress=1.0, error_code=None, error_message=None,
        )
        if credits is not None:
            extra["credits"] = credits
        with self.engine.begin() as conn:
            return apply_transition(conn, job_id, "succeed", stage="done", run_id=run_id,
                                    message=f"stored at {output_uri}", extra=extra)
