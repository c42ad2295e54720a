"""The jobs table and the lifecycle policy (retry backoff, heartbeat timeout)."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from videogen.config import parse_seconds_list, normalize_database_url
from videogen.lifecycle import JobStore


class JobsResource(dg.ConfigurableResource):
    """Reads and writes ``jobs``/``job_events``; the single place ops and sensors change a job's status."""

    database_url: str = Field(description="SQLAlchemy/PostgreSQL URL of the application database (secret).")
    retry_delays_s: str = Field(
        default="5,15,45",
        description="Backoff before each retry of a transient failure, comma-separated seconds; "
        "its length is the number of retries.",
    )
    heartbeat_timeout_s: float = Field(
        default=90.0, description="A running job whose worker has not written a heartbeat for this long is lost."
    )

    @cached_property
    def _engine(self) -> sa.Engine:
        return sa.create_engine(normalize_database_url(self.database_url), pool_pre_ping=True, pool_size=3)

    def store(self) -> JobStore:
        return JobStore(self._engine)

    def retry_delays(self) -> tuple[float, ...]:
        return parse_seconds_list(self.retry_delays_s)


def jobs_from_env() -> JobsResource:
    return JobsResource(
        database_url=dg.EnvVar("DATABASE_URL"),
        retry_delays_s=dg.EnvVar("VIDEOGEN_RETRY_DELAYS_S").get_value("5,15,45"),
        heartbeat_timeout_s=float(dg.EnvVar("VIDEOGEN_HEARTBEAT_TIMEOUT_S").get_value("90")),
    )
