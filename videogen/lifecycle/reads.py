"""Reading jobs and their audit trail (what `videogen status`/`list` and the API show)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from videogen.db.schema import WAITING_STATUSES, job_events, jobs
from videogen.errors import JobNotFoundError


def waiting_ahead(job_id: int) -> sa.Select:
    """The number of jobs waiting ahead of ``job_id`` (pending or queued, with a smaller id), exact:
    ``jobs_waiting_ahead()`` (migration 0009) counts the shorter side of the line, as api_submit_job()
    does for a submission's 201."""
    return sa.select(sa.func.jobs_waiting_ahead(sa.bindparam("job_id", job_id, type_=sa.BigInteger)))


class JobReads:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

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


class JobPageReads:
    """Keyset pages of jobs for the API (newest first; the cursor is the last id seen)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def page(self, *, user_id: str | None = None, status: str | None = None, model: str | None = None,
             created_from: datetime | None = None, created_to: datetime | None = None,
             before_id: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        for column, value in ((jobs.c.user_id, user_id), (jobs.c.status, status), (jobs.c.model, model)):
            if value is not None:
                query = query.where(column == value)
        if created_from is not None:
            query = query.where(jobs.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(jobs.c.created_at < created_to)
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def with_queue_position(self, job_id: int) -> tuple[dict[str, Any], int | None]:
        """A job and the number of jobs waiting ahead of it (None unless it is pending or queued),
        read on one connection.

        By submission order: the run queue also weighs priority and per-user limits, so this is the
        position in the line, not a promise of the start order."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if row is None:
                raise JobNotFoundError(f"job {job_id} does not exist")
            position = None
            if row["status"] in WAITING_STATUSES:
                position = conn.execute(waiting_ahead(job_id)).scalar_one()
        return dict(row), position
