"""A per-user request rate limit shared by every API process: one counter per user and second in
PostgreSQL (``api_rate_limits``, UNLOGGED), incremented with one upsert per request.

A fixed one-second window: at most ``limit`` requests are admitted per user per wall-clock second,
whichever process serves them. Old windows are deleted now and then by whichever request sees it is
time (no background job to run).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from videogen.db.schema import api_rate_limits

CLEANUP_PROBABILITY = 0.01


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    retry_after_s: int


class SharedRateLimiter:
    """At most ``limit`` hits per key in each fixed window of ``window_s`` seconds (default: one second).

    Keys are user ids, or ``<purpose>:<value>`` for requests without an account yet (log-in attempts
    per client address and per email)."""

    def __init__(self, engine: sa.Engine, limit: int, *, window_s: int = 1) -> None:
        self.engine, self.limit, self.window_s = engine, limit, window_s

    def window(self, moment: float) -> int:
        """The start of the window ``moment`` (epoch seconds) falls in: the counter's key."""
        return int(moment // self.window_s) * self.window_s

    @staticmethod
    def cleanup_before(window: int) -> int | None:
        """Now and then (one request in a hundred): windows older than this are deleted."""
        return window - 3600 if random.random() < CLEANUP_PROBABILITY else None

    def hit(self, user_id: str, *, now: float | None = None, conn: sa.Connection | None = None) -> RateDecision:
        """Count one request of ``user_id`` (in ``conn``'s transaction when given)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.hit(user_id, now=now, conn=own)
        moment = time.time() if now is None else now
        window = self.window(moment)
        count = conn.execute(
            pg_insert(api_rate_limits).values(user_id=user_id, window_start=window, count=1)
            .on_conflict_do_update(index_elements=["user_id", "window_start"],
                                   set_={"count": api_rate_limits.c.count + 1})
            .returning(api_rate_limits.c.count)
        ).scalar_one()
        cleanup_before = self.cleanup_before(window)
        if cleanup_before is not None:
            # Skipping rows another cleanup is deleting: a wait here, with this user's row held, could
            # close a cycle with a batch of submissions (migration 0012), which holds several users' rows.
            old = (sa.select(api_rate_limits.c.user_id, api_rate_limits.c.window_start)
                   .where(api_rate_limits.c.window_start < cleanup_before).with_for_update(skip_locked=True))
            conn.execute(api_rate_limits.delete().where(
                sa.tuple_(api_rate_limits.c.user_id, api_rate_limits.c.window_start).in_(old)))
        if count <= self.limit:
            return RateDecision(True, count, 0)
        return RateDecision(False, count, max(1, math.ceil(window + self.window_s - moment)))
