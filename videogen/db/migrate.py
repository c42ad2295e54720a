"""Apply Alembic migrations programmatically (``videogen db upgrade`` and the test fixtures)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config

from videogen.config import normalize_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
logger = logging.getLogger("videogen.db.migrate")


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = normalize_database_url(database_url)  # a libpq URL works too
    return cfg


# A migration that locks tables busy with requests may give way (lock_timeout; a deadlock's victim):
# nothing of it is left, and the next attempt starts again from the same revision.
RETRYABLE_SQLSTATES = ("55P03", "40P01")  # lock_not_available, deadlock_detected
UPGRADE_ATTEMPTS = 20


def upgrade(database_url: str, revision: str = "head", *, attempts: int = UPGRADE_ATTEMPTS) -> None:
    import sqlalchemy as sa

    for attempt in range(1, attempts + 1):
        try:
            command.upgrade(alembic_config(database_url), revision)
            return
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            logger.warning("a migration gave way to requests holding its tables (%s); attempt %d of %d in %.1f s",
                           exc.orig.pgcode, attempt + 1, attempts, min(0.2 * attempt, 2.0))
            time.sleep(min(0.2 * attempt, 2.0))


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
