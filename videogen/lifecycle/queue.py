"""What the sensors read and write: pending rows to launch, active jobs to reconcile."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from videogen.db.schema import ACTIVE_STATUSES, job_events, jobs
from videogen.lifecycle.transitions import apply_to_many, apply_transition


class JobQueue:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def pending_batch(self, limit: int) -> list[dict[str, Any]]:
        """Pending jobs in fair order: round-robin over users, oldest first within a user.

        Status-driven (no id cursor), so a row that commits late with a lower id is found on the
        next tick. The round-robin keeps one user's backlog of thousands of rows from delaying
        every other user's first request (the run queue itself is FIFO within a priority).
        """
        ready = (
            sa.select(
                jobs.c.id, jobs.c.user_id, jobs.c.model, jobs.c.priority, jobs.c.submission,
                jobs.c.storyboard.isnot(None).label("film"),
                sa.func.row_number().over(partition_by=jobs.c.user_id, order_by=jobs.c.id).label("user_rank"),
            )
            .where(jobs.c.status == "pending",
                   sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.func.now()))
            .subquery()
        )
        query = (
            sa.select(ready.c.id, ready.c.user_id, ready.c.model, ready.c.priority, ready.c.submission, ready.c.film)
            .order_by(ready.c.user_rank, ready.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def wait_for_pending(self, *, deadline: float, poll_s: float,
                         clock: Callable[[], float] = time.monotonic) -> bool:
        """Look for a ``pending`` row that may start now, every ``poll_s`` until ``deadline`` (a
        ``clock`` time). True as soon as there is one, False at the deadline.

        Polled, not LISTEN/NOTIFY: a NOTIFY on every insert would serialize the commits of every
        submission (PostgreSQL holds a global lock from a notifying transaction's pre-commit to its
        end), while this probe is one index lookup on the partial index of pending rows."""
        ready = sa.select(sa.exists().where(
            jobs.c.status == "pending",
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.func.clock_timestamp())))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while True:
                if conn.execute(ready).scalar_one():
                    return True
                remaining = deadline - clock()
                if remaining <= 0:
                    return False
                time.sleep(min(poll_s, remaining))

    def mark_queued(self, runs: Mapping[int, str]) -> list[int]:
        """Confirm pending jobs as queued under their runs, in one transaction (a sensor tick).

        A job whose run already claimed it (and recorded ``queued`` itself) is not pending any more
        and is left alone. Returns the ids that moved."""
        with self.engine.begin() as conn:
            return apply_to_many(conn, "queue", runs, stage="queue", message="run {run_id} requested",
                                 extra={"queued_at": sa.func.coalesce(jobs.c.queued_at, sa.func.now())})

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

    def resubmit_lost(self, job_id: int, *, run_id: str, delay_s: float, reason: str) -> bool:
        """A run died without reporting: queue the job again after a backoff (a new run key)."""
        with self.engine.begin() as conn:
            return apply_transition(
                conn, job_id, "resubmit_lost", stage="submit",
                message=f"{reason}; resubmitted, next attempt in {delay_s:g} s",
                extra={"submission": jobs.c.submission + 1, "run_id": None, "progress": 0.0,
                       "not_before": sa.func.now() + timedelta(seconds=delay_s)},
                where=jobs.c.run_id == run_id,
            )

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
        """The canceled job's run was stopped (or had none): an audit event, no status change."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.stage == "cancel_requested")
                         .values(stage="canceled", updated_at=sa.func.now()))
            conn.execute(job_events.insert().values(job_id=job_id, status="canceled", stage="canceled",
                                                    message=message))
