"""The jobs table and the lifecycle policy (retry backoff, heartbeat timeout)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from resources.database import PostgresResource
from videogen.config import parse_seconds_list
from videogen.lifecycle import JobStore


class JobsResource(PostgresResource):
    """Reads and writes ``jobs``/``job_events``; the single place ops and sensors change a job's status.

    The connection (``database_url``, one pooled engine) is the application database's, as for the KPI
    assets' ``PostgresResource``; this adds the lifecycle policy.
    """

    retry_delays_s: str = Field(
        default="5,15,45",
        description="Backoff before each retry of a transient failure, comma-separated seconds; "
        "its length is the number of retries.",
    )
    heartbeat_timeout_s: float = Field(
        default=90.0, description="A running job whose worker has not written a heartbeat for this long is lost."
    )

    def store(self) -> JobStore:
        return JobStore(self.get_engine())

    def retry_delays(self) -> tuple[float, ...]:
        return parse_seconds_list(self.retry_delays_s)


def jobs_from_env() -> JobsResource:
    from videogen.config import load_settings

    settings = load_settings()
    return JobsResource(
        database_url=dg.EnvVar("DATABASE_URL"),
        retry_delays_s=",".join(f"{delay:g}" for delay in settings.retry_delays_s),
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
