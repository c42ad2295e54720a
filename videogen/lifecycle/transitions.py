"""The state machine of a job: the one table of allowed transitions, and the one way to apply them.

Every status change is a conditional UPDATE (``WHERE status IN (the transition's sources)``) plus
an INSERT into ``job_events`` in the same transaction, so the audit trail never disagrees with the
row and two actors (a run and a ``videogen cancel``, say) can never both win a transition.

The table below is rendered from :data:`TRANSITIONS` (a test keeps the two equal)::

    queue               pending          → queued     a run was requested for the row
    requeue_failed      failed           → queued     an operator re-executes a failed partition
    start               queued           → running    the run claims the job
    reclaim             running          → running    the run that holds the job claims it again
    succeed             running          → succeeded  outputs stored and verified
    fail                queued, running  → failed     retries spent, a permanent error, or the run died
    reject              running          → rejected   the request is invalid (never retried)
    cancel              pending, queued, running → canceled   canceled by request
    retry               failed, canceled → pending    resubmitted by request (a new run key)
    resubmit_lost       queued, running  → pending    the run died without reporting (a new run key)
    regenerate          running          → pending    a content QA gate failed: once more, new seed (a new run key)

``rejected`` is also reached by an insert: ``submit`` stores an invalid request as ``rejected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from videogen.accounts.credits import refund_jobs
from videogen.db.schema import TERMINAL_STATUSES, job_events, jobs
from videogen.webhooks import enqueue_for_jobs

# Reaching one of these gives the job's credit reservation back (once per submission), in the same
# transaction as the status change, whoever makes it (the API, the CLI, a Dagster run, a sensor).
# Reaching any final status also records the job's webhook delivery (if it has a callback URL) in
# that transaction.
REFUNDED_STATUSES = frozenset({"failed", "rejected", "canceled"})


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]
    target: str
    why: str


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("queue", ("pending",), "queued", "a run was requested for the row"),
        Transition("requeue_failed", ("failed",), "queued", "an operator re-executes a failed partition"),
        Transition("start", ("queued",), "running", "the run claims the job"),
        Transition("reclaim", ("running",), "running", "the run that holds the job claims it again"),
        Transition("succeed", ("running",), "succeeded", "outputs stored and verified"),
        Transition("fail", ("queued", "running"), "failed",
                   "retries spent, a permanent error, or the run died"),
        Transition("reject", ("running",), "rejected", "the request is invalid (never retried)"),
        Transition("cancel", ("pending", "queued", "running"), "canceled", "canceled by request"),
        Transition("retry", ("failed", "canceled"), "pending", "resubmitted by request (a new run key)"),
        Transition("resubmit_lost", ("queued", "running"), "pending",
                   "the run died without reporting (a new run key)"),
        Transition("regenerate", ("running",), "pending",
                   "a content QA gate failed: once more, new seed (a new run key)"),
    )
}


def describe_transitions() -> str:
    """The table as the module docstring shows it."""
    lines = []
    for t in TRANSITIONS.values():
        sources = ", ".join(t.sources)
        arrow = f"{sources:<16} → {t.target:<10}" if len(sources) <= 16 else f"{sources} → {t.target}  "
        lines.append(f"    {t.name:<19} {arrow} {t.why}")
    return "\n".join(lines)


def next_statuses(status: str) -> set[str]:
    """Where a job in ``status`` may go (for checks of an audit trail)."""
    return {t.target for t in TRANSITIONS.values() if status in t.sources}


def apply_transition(
    conn: sa.Connection,
    job_id: int,
    name: str,
    *,
    stage: str | None = None,
    message: str | None = None,
    run_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    where: sa.ColumnElement[bool] | None = None,
) -> bool:
    """Apply transition ``name`` to one job inside ``conn``'s transaction. Returns whether it moved.

    ``where`` narrows the transition further (e.g. only the run that holds the job may re-claim it);
    it can never widen the table's sources.
    """
    transition = TRANSITIONS[name]
    values: dict[str, Any] = {"status": transition.target, "updated_at": sa.func.now(), **(extra or {})}
    if stage is not None:
        values["stage"] = stage
    if run_id is not None:
        values["run_id"] = run_id
    if transition.target in TERMINAL_STATUSES:
        values.setdefault("finished_at", sa.func.now())
    conditions = [jobs.c.id == job_id, jobs.c.status.in_(transition.sources)]
    if where is not None:
        conditions.append(where)
    moved = conn.execute(jobs.update().where(*conditions).values(**values).returning(jobs.c.id)).first()
    if moved is None:
        return False
    conn.execute(job_events.insert().values(job_id=job_id, status=transition.target, stage=stage,
                                            message=message, run_id=run_id))
    if transition.target in REFUNDED_STATUSES:
        refund_jobs(conn, [job_id], reason=f"job {transition.target}")
    if transition.target in TERMINAL_STATUSES:
        enqueue_for_jobs(conn, [job_id])
    return True


def apply_to_many(
    conn: sa.Connection,
    name: str,
    rows: Mapping[int, str],
    *,
    stage: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
) -> list[int]:
    """Apply transition ``name`` to many jobs at once, each with its own run id (a sensor tick).

    ``message`` may contain ``{run_id}``. Returns the ids of the jobs that moved.
    """
    if not rows:
        return []
    transition = TRANSITIONS[name]
    pairs = sa.values(sa.column("job_id", sa.BigInteger), sa.column("run_id", sa.Text), name="v").data(
        list(rows.items()))
    moved = conn.execute(
        jobs.update()
        .where(jobs.c.id == pairs.c.job_id, jobs.c.status.in_(transition.sources))
        .values(status=transition.target, stage=stage, run_id=pairs.c.run_id, updated_at=sa.func.now(),
                **(extra or {}))
        .returning(jobs.c.id, jobs.c.run_id)
    ).all()
    if moved:
        conn.execute(job_events.insert(), [
            {"job_id": row.id, "status": transition.target, "stage": stage, "run_id": row.run_id,
             "message": message.format(run_id=row.run_id)} for row in moved])
        if transition.target in REFUNDED_STATUSES:
            refund_jobs(conn, [row.id for row in moved], reason=f"job {transition.target}")
        if transition.target in TERMINAL_STATUSES:
            enqueue_for_jobs(conn, [row.id for row in moved])
    return [row.id for row in moved]
