"""The credit ledger: every change of a balance is a ``credit_ledger`` row written in the same
transaction as the balance update, and a balance never goes below zero.

- ``grant``   an admin adds credits (positive);
- ``reserve`` a submission takes the job's price (negative), in the transaction that inserts the job;
- ``refund``  a job that ends ``failed``, ``rejected`` or ``canceled`` gives its reservation back,
  exactly once per submission (a unique index), whichever process moves it there: the API, the CLI,
  or a Dagster run;
- ``adjust``  an admin correction (either sign).

A succeeded job keeps its reservation: that is its charge (``jobs.credits``, the same formula), so
``balance = grants − credits of succeeded jobs`` (± adjustments) at any time no job is active.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from videogen.db.schema import credit_ledger, jobs, users
from videogen.errors import InsufficientCreditsError, UserNotFoundError, ValidationError

MAX_GRANT = Decimal("1000000000")


def parse_amount(raw: Any, *, allow_negative: bool = False) -> Decimal:
    """A credit amount as a person types it: a number with at most 4 decimals, within ±1e9."""
    text = str(raw)
    shown = text if len(text) <= 40 else text[:40] + "…"
    if isinstance(raw, bool) or raw is None:
        raise ValidationError(f"amount must be a number, got {shown!r}", code="invalid_amount")
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"amount must be a number, got {shown!r}", code="invalid_amount") from None
    if not value.is_finite():
        raise ValidationError(f"amount must be a finite number, got {shown!r}", code="invalid_amount")
    if not allow_negative and value <= 0:
        raise ValidationError(f"amount must be greater than 0, got {shown!r}", code="invalid_amount")
    if abs(value) > MAX_GRANT:  # before quantize, which cannot represent 1e30 to 4 decimals
        raise ValidationError(f"amount must be at most {MAX_GRANT:,} credits, got {shown!r}", code="invalid_amount")
    if value.as_tuple().exponent < -4 and value != value.quantize(Decimal("0.0001")):
        raise ValidationError(f"amount has at most 4 decimals, got {shown!r}", code="invalid_amount")
    return value


def _move(conn: sa.Connection, user_id: str, amount: Decimal) -> Decimal | None:
    """Add ``amount`` (any sign) to a balance if it stays ≥ 0; the new balance, or None if it would not."""
    return conn.execute(
        users.update()
        .where(users.c.id == user_id, users.c.deleted_at.is_(None), users.c.credit_balance + amount >= 0)
        .values(credit_balance=users.c.credit_balance + amount)
        .returning(users.c.credit_balance)
    ).scalar()


def reserve_for_job(conn: sa.Connection, *, user_id: str, job_id: int, submission: int, amount: Decimal) -> None:
    """Take a job's price from its owner's balance inside ``conn``'s transaction, or raise
    :class:`InsufficientCreditsError` (the caller's transaction then rolls back the job too)."""
    if _move(conn, user_id, -amount) is None:
        balance = conn.execute(sa.select(users.c.credit_balance).where(users.c.id == user_id)).scalar() or Decimal(0)
        missing = amount - balance
        raise InsufficientCreditsError(
            f"this job costs {amount} credits and the balance is {balance}: {missing} credits are missing",
            required=amount, balance=balance, missing=missing)
    conn.execute(credit_ledger.insert().values(user_id=user_id, kind="reserve", amount=-amount, job_id=job_id,
                                               submission=submission, note="reserved at submission"))


def refund_jobs(conn: sa.Connection, job_ids: Sequence[int], reason: str) -> int:
    """Give back each job's outstanding reservation, once. Returns how many were refunded.

    Called by the lifecycle in the transaction that moves the jobs to failed/rejected/canceled; jobs
    without a reservation (inserted by SQL or the CLI) have nothing to refund.
    """
    if not job_ids:
        return 0
    # Every reservation of these jobs that has no refund yet. Not only the current submission's: a
    # run that died is resubmitted under a new submission number (a new run key) without a new
    # reservation, and the one made at submission must still come back if the job ends failed.
    reserved = (
        sa.select(credit_ledger.c.user_id, credit_ledger.c.job_id, credit_ledger.c.submission,
                  sa.literal("refund").label("kind"), (-credit_ledger.c.amount).label("amount"),
                  sa.literal(reason).label("note"))
        .where(credit_ledger.c.job_id.in_(list(job_ids)), credit_ledger.c.kind == "reserve")
    )
    refunded = conn.execute(
        pg_insert(credit_ledger)
        .from_select(["user_id", "job_id", "submission", "kind", "amount", "note"], reserved)
        .on_conflict_do_nothing(index_elements=["job_id", "submission", "kind"],
                                index_where=credit_ledger.c.job_id.isnot(None))
        .returning(credit_ledger.c.user_id, credit_ledger.c.amount)
    ).all()
    for row in refunded:
        conn.execute(users.update().where(users.c.id == row.user_id)
                     .values(credit_balance=users.c.credit_balance + row.amount))
    return len(refunded)


def reservation_of(conn: sa.Connection, job_id: int) -> sa.Row | None:
    """The latest reservation of a job (who paid, how much, for which submission), if any."""
    return conn.execute(
        sa.select(credit_ledger.c.user_id, credit_ledger.c.amount, credit_ledger.c.submission)
        .where(credit_ledger.c.job_id == job_id, credit_ledger.c.kind == "reserve")
        .order_by(credit_ledger.c.id.desc()).limit(1)
    ).first()


class CreditLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def grant(self, user_id: str, amount: Any, *, by: str | None = None, note: str | None = None,
              kind: str = "grant") -> Decimal:
        """Add credits (``adjust`` may also remove some). Returns the new balance."""
        value = parse_amount(amount, allow_negative=(kind == "adjust"))
        with self.engine.begin() as conn:
            balance = _move(conn, user_id, value)
            if balance is None:
                exists = conn.execute(sa.select(users.c.credit_balance).where(
                    users.c.id == user_id, users.c.deleted_at.is_(None))).first()
                if exists is None:
                    raise UserNotFoundError(f"user {user_id} does not exist")
                raise ValidationError(f"the balance is {exists.credit_balance}: it cannot go below 0",
                                      code="invalid_amount")
            conn.execute(credit_ledger.insert().values(user_id=user_id, kind=kind, amount=value, note=note,
                                                       created_by=by))
        return balance

    def balance(self, user_id: str) -> Decimal:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(users.c.credit_balance).where(users.c.id == user_id)).scalar_one()

    def entries(self, user_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(credit_ledger.c.id, credit_ledger.c.kind, credit_ledger.c.amount, credit_ledger.c.job_id,
                          credit_ledger.c.submission, credit_ledger.c.note, credit_ledger.c.created_at)
                .where(credit_ledger.c.user_id == user_id).order_by(credit_ledger.c.id.desc()).limit(limit)
            ).mappings()
            return [dict(r) for r in rows]


def reserve_again(conn: sa.Connection, job_id: int) -> bool:
    """A failed or canceled job sent back to work (a retry, a re-executed partition) reserves the price
    of its latest reservation again, under its new submission number; jobs that never reserved (SQL,
    CLI) pay nothing. Raises :class:`InsufficientCreditsError` (the caller's transaction rolls back)."""
    previous = reservation_of(conn, job_id)
    if previous is None:
        return False
    submission = conn.execute(sa.select(jobs.c.submission).where(jobs.c.id == job_id)).scalar_one()
    reserve_for_job(conn, user_id=previous.user_id, job_id=job_id, submission=submission, amount=-previous.amount)
    return True
