"""Erasing an account (GDPR art. 17): the person's data goes, the platform's numbers stay.

What :meth:`AccountEraser.erase` does, in this order:

1. **Lock out** (one transaction): the account is marked deleted (``deleted_at``), so no login,
   access token, refresh token or API key works from then on and no new job can reserve credits; its
   API keys and refresh tokens are revoked; its password hash and webhook secret are removed; its
   jobs lose their ``callback_url`` (a cancellation below must not call the person's server). The
   submission lock of the user (the advisory lock :mod:`videogen.lifecycle.submission` takes) is held
   meanwhile, so a submission in flight either commits first (and its job is erased too) or finds
   the account deleted.
2. **Cancel** every pending, queued or running job through the lifecycle
   (:meth:`JobActions.cancel`): the audit trail records it, a running job's run is stopped by the
   reconciliation sensor, and the reservation is refunded exactly once.
3. **Delete the outputs** of every job of the user from the object storage (``videos/<job id>/``).
4. **Anonymize** (one transaction): the account gets a new id, ``erased_<16 hex>``, used for all
   its rows, so per-user counts (``active_users`` of the KPIs) still add up while nothing points back
   to the person: the ``users`` row is re-created under that id with the email
   ``<id>@erased.invalid``, and its API keys, refresh tokens and credit ledger move to it (they
   reference ``users.id`` by foreign key; the old row is then deleted). Jobs keep their status,
   dates, model, parameters and metering (what the KPIs read) and lose the prompt, negative prompt,
   idempotency key, callback URL, error message (a validation message may quote the prompt) and
   output locations; their ``job_events`` messages are cleared. The jobs' webhook deliveries (they
   name the person's URL) and the user's rate-limit counters are deleted. Credit-ledger notes written by a person
   (``grant``, ``adjust``) are cleared; the system's notes stay. Where the account appears as the
   author of other rows (``credit_ledger.created_by``, ``account_erasures.requested_by`` of an admin)
   it is renamed too. An ``account_erasures`` row records the anonymized id, who asked (the
   anonymized id again when the person asked themselves) and the counts.

If step 2 or 3 fails (the storage is down, say), the account stays locked out and not yet
anonymized; calling :meth:`erase` again for the same user id finishes the work (an admin does that:
the person can no longer authenticate). An account that was erased is identified by its anonymized
id and is refused with :class:`ConflictError`.

Not covered here: what lives outside PostgreSQL and the bucket. Dagster's run storage keeps the
tags of past runs (the old user id, ``u_<hex>``, which no longer names any account, and the model;
never the prompt nor the email), and application logs keep what they logged. A run that was
uploading when its job was canceled may still finish its upload after step 3; its objects are then
orphans (no job row points to them).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from videogen.db.schema import (account_erasures, api_keys, api_rate_limits, credit_ledger, job_events, jobs,
                                refresh_tokens, users, webhook_deliveries)
from videogen.errors import ConflictError, InvalidTransitionError, JobNotFoundError, UserNotFoundError
from videogen.lifecycle import JobStore
from videogen.storage.base import ObjectStorage
from videogen.storage.job_outputs import job_prefix
from videogen.storage.uploads import user_prefix

logger = logging.getLogger(__name__)

ANONYMOUS_PREFIX = "erased_"
ERASED_EMAIL_DOMAIN = "erased.invalid"  # .invalid is reserved (RFC 2606): never a real mailbox
CANCELABLE_STATUSES = ("pending", "queued", "running")
PERSONAL_LEDGER_KINDS = ("grant", "adjust")  # notes typed by a person; the others are the system's


def anonymous_id() -> str:
    return ANONYMOUS_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class ErasureSummary:
    anonymized_user_id: str
    jobs_anonymized: int
    jobs_canceled: int
    objects_deleted: int
    keys_revoked: int
    refresh_tokens_revoked: int
    erased_at: datetime


class AccountEraser:
    """Erases accounts over one database and the object storage that holds the job outputs."""

    def __init__(self, engine: sa.Engine, storage: ObjectStorage, store: JobStore | None = None) -> None:
        self.engine, self.storage = engine, storage
        self.store = store or JobStore(engine)

    def erase(self, user_id: str, *, requested_by: str) -> ErasureSummary:
        """Erase ``user_id`` on behalf of ``requested_by`` (the user themselves or an admin).

        Raises :class:`UserNotFoundError` for an unknown id, :class:`ConflictError` for an account
        that was already erased; a storage failure propagates (the erasure can be run again)."""
        job_ids = self._lock_out(user_id)
        canceled = self._cancel(job_ids)
        objects = sum(self.storage.delete_prefix(job_prefix(job_id)) for job_id in job_ids)
        # The user's own files (audio prompts, music) are personal data too.
        objects += self.storage.delete_prefix(user_prefix(user_id))
        return self._anonymize(user_id, requested_by=requested_by, jobs_canceled=canceled, objects_deleted=objects)

    # -- the steps ------------------------------------------------------------------------------

    @staticmethod
    def _submission_lock(conn: sa.Connection, user_id: str) -> None:
        # The same lock JobSubmissions.submit takes (before it touches the users row): taken first
        # here too, so the two never wait on each other in opposite orders.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(user_id))))

    def _account(self, conn: sa.Connection, user_id: str) -> sa.RowMapping:
        row = conn.execute(sa.select(users).where(users.c.id == user_id).with_for_update()).mappings().first()
        if row is None:
            raise UserNotFoundError(f"user {user_id} does not exist")
        if row["deleted_at"] is not None and conn.execute(
                sa.select(account_erasures.c.id).where(account_erasures.c.anonymized_user_id == user_id)).first():
            raise ConflictError(f"account {user_id} has already been erased", code="already_erased")
        return row

    @staticmethod
    def _lock_jobs(conn: sa.Connection, user_id: str) -> None:
        # A job's status change locks the job, then its owner's row (the count of active jobs, a
        # refund): the jobs first here too, before the users row, so the two never wait on each other
        # in opposite orders.
        conn.execute(sa.select(jobs.c.id).where(jobs.c.user_id == user_id).order_by(jobs.c.id).with_for_update())

    def _lock_out(self, user_id: str) -> list[int]:
        with self.engine.begin() as conn:
            self._submission_lock(conn, user_id)
            self._lock_jobs(conn, user_id)
            self._account(conn, user_id)
            conn.execute(users.update().where(users.c.id == user_id).values(
                deleted_at=sa.func.coalesce(users.c.deleted_at, sa.func.now()), password_hash=None,
                webhook_secret=None))
            conn.execute(api_keys.update().where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=sa.func.now()))
            conn.execute(refresh_tokens.update().where(refresh_tokens.c.user_id == user_id,
                                                       refresh_tokens.c.revoked_at.is_(None))
                         .values(revoked_at=sa.func.now()))
            conn.execute(jobs.update().where(jobs.c.user_id == user_id, jobs.c.callback_url.is_not(None))
                         .values(callback_url=None))
            return list(conn.execute(sa.select(jobs.c.id).where(jobs.c.user_id == user_id)
                                     .order_by(jobs.c.id)).scalars())

    def _cancel(self, job_ids: list[int]) -> int:
        if not job_ids:
            return 0
        with self.engine.connect() as conn:
            active = list(conn.execute(sa.select(jobs.c.id).where(
                jobs.c.id.in_(job_ids), jobs.c.status.in_(CANCELABLE_STATUSES)).order_by(jobs.c.id)).scalars())
        canceled = 0
        for job_id in active:
            try:
                self.store.operator.cancel(job_id)
                canceled += 1
            except (InvalidTransitionError, JobNotFoundError):
                pass  # it reached a final status meanwhile: nothing left to stop
        return canceled

    def _anonymize(self, user_id: str, *, requested_by: str, jobs_canceled: int,
                   objects_deleted: int) -> ErasureSummary:
        anonymous = anonymous_id()
        with self.engine.begin() as conn:
            self._submission_lock(conn, user_id)
            self._lock_jobs(conn, user_id)
            account = self._account(conn, user_id)
            erased_at = account["deleted_at"]
            # Counted here, not in _lock_out, so that a resumed erasure reports what it revoked.
            keys_revoked = conn.execute(sa.select(sa.func.count()).where(
                api_keys.c.user_id == user_id, api_keys.c.revoked_at >= erased_at)).scalar_one()
            tokens_revoked = conn.execute(sa.select(sa.func.count()).where(
                refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at >= erased_at)).scalar_one()

            conn.execute(users.insert().values(
                id=anonymous, email=f"{anonymous}@{ERASED_EMAIL_DOMAIN}", password_hash=None, role=account["role"],
                credit_balance=account["credit_balance"], webhook_secret=None, created_at=account["created_at"],
                deleted_at=erased_at))
            conn.execute(api_keys.update().where(api_keys.c.user_id == user_id)
                         .values(user_id=anonymous, name="erased"))
            conn.execute(refresh_tokens.update().where(refresh_tokens.c.user_id == user_id).values(user_id=anonymous))
            conn.execute(credit_ledger.update().where(credit_ledger.c.user_id == user_id,
                                                      credit_ledger.c.kind.in_(PERSONAL_LEDGER_KINDS))
                         .values(note=None))
            conn.execute(credit_ledger.update().where(credit_ledger.c.user_id == user_id).values(user_id=anonymous))
            conn.execute(credit_ledger.update().where(credit_ledger.c.created_by == user_id)
                         .values(created_by=anonymous))
            # An erased admin may have erased others: those records name them by the same new id.
            conn.execute(account_erasures.update().where(account_erasures.c.requested_by == user_id)
                         .values(requested_by=anonymous))
            conn.execute(users.delete().where(users.c.id == user_id))

            erased_jobs = list(conn.execute(
                jobs.update().where(jobs.c.user_id == user_id).values(
                    user_id=anonymous, prompt="", negative_prompt="", idempotency_key=None, callback_url=None,
                    storyboard=None, transcript=None, audio_prompt_key=None,
                    error_message=None, output_uri=None, thumbnail_uri=None, updated_at=sa.func.now())
                .returning(jobs.c.id)).scalars())
            if erased_jobs:
                conn.execute(job_events.update().where(job_events.c.job_id.in_(erased_jobs),
                                                       job_events.c.message.is_not(None)).values(message=None))
                conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.job_id.in_(erased_jobs)))
            conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.user_id == user_id))
            conn.execute(api_rate_limits.delete().where(api_rate_limits.c.user_id == user_id))

            conn.execute(account_erasures.insert().values(
                anonymized_user_id=anonymous, requested_by=anonymous if requested_by == user_id else requested_by,
                jobs_anonymized=len(erased_jobs), objects_deleted=objects_deleted, keys_revoked=keys_revoked))
        logger.info("account erased as %s: %d jobs anonymized, %d canceled, %d objects deleted, %d keys revoked",
                    anonymous, len(erased_jobs), jobs_canceled, objects_deleted, keys_revoked)
        return ErasureSummary(anonymous, len(erased_jobs), jobs_canceled, objects_deleted, keys_revoked,
                              tokens_revoked, erased_at)
