"""Retention: purge the outputs of old jobs; the ``jobs`` rows stay as history.

Only jobs in a final status are touched (a job still being worked on is never purged), and the
row keeps its size and checksum; its output URIs are cleared and an event records the purge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from videogen.db.schema import TERMINAL_STATUSES, job_events, jobs


def jobs_with_expired_outputs(engine: sa.Engine, cutoff: datetime, limit: int) -> list[int]:
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.created_at < cutoff, jobs.c.status.in_(sorted(TERMINAL_STATUSES)),
               jobs.c.output_uri.is_not(None))
        .order_by(jobs.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def mark_outputs_purged(engine: sa.Engine, job_id: int, deleted_objects: int) -> None:
    with engine.begin() as conn:
        status = conn.execute(
            jobs.update().where(jobs.c.id == job_id)
            .values(output_uri=None, thumbnail_uri=None, updated_at=sa.func.now())
            .returning(jobs.c.status)
        ).scalar()
        conn.execute(job_events.insert().values(
            job_id=job_id, status=status, stage="retention",
            message=f"outputs purged by retention ({deleted_objects} object(s) deleted)"))


def purge_expired_outputs(engine: sa.Engine, storage, cutoff: datetime, *, limit: int = 1000) -> dict[int, int]:
    """Delete ``videos/<id>/`` for finished jobs created before ``cutoff``. Returns id → objects deleted."""
    from videogen.storage.job_outputs import job_prefix

    purged: dict[int, int] = {}
    for job_id in jobs_with_expired_outputs(engine, cutoff, limit):
        deleted = storage.delete_prefix(job_prefix(job_id))
        mark_outputs_purged(engine, job_id, deleted)
        purged[job_id] = deleted
    return purged


def expired_partition_keys(engine: sa.Engine, partition_keys: Iterable[str], cutoff: datetime) -> list[str]:
    """The partition keys (job ids) of finished jobs created before ``cutoff``, or with no job at all."""
    keys = [key for key in partition_keys if key.isdigit()]
    expired: list[str] = []
    for start in range(0, len(keys), 5000):
        chunk = [int(k) for k in keys[start : start + 5000]]
        with engine.connect() as conn:
            keep = set(
                conn.execute(
                    sa.select(jobs.c.id).where(
                        jobs.c.id.in_(chunk),
                        sa.or_(jobs.c.created_at >= cutoff, jobs.c.status.not_in(sorted(TERMINAL_STATUSES))),
                    )
                ).scalars()
            )
        expired.extend(str(job_id) for job_id in chunk if job_id not in keep)
    return expired
