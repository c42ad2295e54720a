"""The counts triggers keep on ``jobs`` (migration 0011), recounted from the rows.

Triggers keep ``users.active_jobs`` (the active-jobs cap) and ``waiting_jobs_slots`` (the number of
waiting jobs, for queue positions) exact, in every snapshot, as long as every change to ``jobs`` fires
them. A bulk load that bypasses triggers (``pg_restore --data-only --disable-triggers``, a session with
``session_replication_role = replica``, ``ALTER TABLE jobs DISABLE TRIGGER``) leaves them wrong:
``videogen db recount`` sets them from a count of the rows, and says what it corrected.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from videogen.db.schema import CAPPED_STATUSES, WAITING_STATUSES


@dataclass(frozen=True)
class Recount:
    waiting_before: int  # the sum of the slots before
    waiting: int  # the number of waiting jobs, now in the slots
    accounts_corrected: int  # accounts whose active_jobs was wrong


def recount(engine: sa.Engine) -> Recount:
    """Set the kept counts from the rows of ``jobs``, with no job written meanwhile."""
    with engine.begin() as conn:
        # SHARE ROW EXCLUSIVE: readers go on, writers of jobs wait (as the migration that made the counts).
        conn.execute(sa.text("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE"))
        before = conn.execute(sa.text("SELECT coalesce(sum(waiting), 0) FROM waiting_jobs_slots")).scalar_one()
        waiting = conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status IN :waiting")
                               .bindparams(sa.bindparam("waiting", expanding=True)),
                               {"waiting": list(WAITING_STATUSES)}).scalar_one()
        conn.execute(sa.text("UPDATE waiting_jobs_slots SET waiting = CASE WHEN slot = 0 THEN :n ELSE 0 END "
                             "WHERE waiting <> CASE WHEN slot = 0 THEN :n ELSE 0 END"), {"n": waiting})
        corrected = conn.execute(sa.text(
            "UPDATE users u SET active_jobs = c.active FROM ("
            "  SELECT u2.id, (SELECT count(*) FROM jobs j WHERE j.user_id = u2.id AND j.status IN :capped) AS active"
            "  FROM users u2) c "
            "WHERE u.id = c.id AND u.active_jobs <> c.active").bindparams(sa.bindparam("capped", expanding=True)),
            {"capped": list(CAPPED_STATUSES)}).rowcount
    return Recount(before, waiting, corrected)
