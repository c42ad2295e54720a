"""What a person asks of a job: cancel it, or retry it."""

from __future__ import annotations

import sqlalchemy as sa

from videogen.accounts.credits import reserve_again
from videogen.db.schema import jobs
from videogen.errors import InvalidTransitionError, JobNotFoundError
from videogen.lifecycle.submission import Account, check_active_jobs, lock_user
from videogen.lifecycle.transitions import TRANSITIONS, apply_transition


class JobActions:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _status_of(self, conn: sa.Connection, job_id: int) -> str:
        status = conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
        if status is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        return status

    def cancel(self, job_id: int) -> str:
        """Cancel a pending, queued or running job. Returns the new status; raises if not cancelable."""
        with self.engine.begin() as conn:
            if apply_transition(conn, job_id, "cancel", stage="cancel_requested", message="canceled by request",
                                extra={"error_code": "canceled", "error_message": "canceled by request"}):
                return "canceled"
            status = self._status_of(conn, job_id)
        allowed = ", ".join(TRANSITIONS["cancel"].sources[:-1]) + " or " + TRANSITIONS["cancel"].sources[-1]
        raise InvalidTransitionError(f"job {job_id} is {status}; only {allowed} jobs can be canceled")

    def retry(self, job_id: int, account: Account | None = None) -> int:
        """Send a failed or canceled job back to ``pending`` under a new submission (a new run key).

        Returns the new submission number. A job whose previous submission reserved credits (an API
        job) reserves the same price again, or the retry is refused with InsufficientCreditsError. With
        an ``account`` (the API), the retry counts against the owner's active-jobs cap like a submission."""
        with self.engine.begin() as conn:
            owner = conn.execute(sa.select(jobs.c.user_id).where(jobs.c.id == job_id)).scalar()
            if account is not None and owner is not None:
                lock_user(conn, owner)  # the same lock as submissions: the active-jobs cap holds
                if account.max_active_jobs is not None and self._status_of(conn, job_id) in TRANSITIONS["retry"].sources:
                    check_active_jobs(conn, owner, account)
            moved = apply_transition(
                conn, job_id, "retry", stage="submit", message="resubmitted by request",
                extra={"submission": jobs.c.submission + 1, "run_id": None, "error_code": None,
                       "error_message": None, "finished_at": None, "queued_at": None, "started_at": None,
                       "progress": 0.0, "output_uri": None, "thumbnail_uri": None, "output_size_bytes": None,
                       "output_sha256": None, "not_before": None},
            )
            if moved:
                reserve_again(conn, job_id)
                return conn.execute(sa.select(jobs.c.submission).where(jobs.c.id == job_id)).scalar_one()
            status = self._status_of(conn, job_id)
        raise InvalidTransitionError(
            f"job {job_id} is {status}; only failed or canceled jobs can be retried"
            + (" (a rejected request must be corrected and submitted again)" if status == "rejected" else "")
        )
