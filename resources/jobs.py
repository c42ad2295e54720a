"""The jobs table and the lifecycle policy (retry backoff, heartbeat timeout)."""

from __future__ import annotations

from pydantic import Field

from resources.database import PostgresResource, database_url_env_var
from videogen.config import format_seconds_list, load_settings, parse_seconds_list, setting_default
from videogen.lifecycle import JobStore


class JobsResource(PostgresResource):
    """Reads and writes ``jobs``/``job_events``; the single place ops and sensors change a job's status.

    The connection (``database_url``, one pooled engine) is the application database's, as for the KPI
    assets' ``PostgresResource``; this adds the lifecycle policy, whose defaults are
    :class:`videogen.config.Settings`'.
    """

    retry_delays_s: str = Field(
        default=format_seconds_list(setting_default("retry_delays_s")),
        description="Backoff before each retry of a transient failure, comma-separated seconds; "
        "its length is the number of retries.",
    )
    heartbeat_timeout_s: float = Field(
        default=setting_default("heartbeat_timeout_s"),
        description="A running job whose worker has not written a heartbeat for this long is lost.",
    )

    def store(self) -> JobStore:
        return JobStore(self.get_engine())

    def retry_delays(self) -> tuple[float, ...]:
        return parse_seconds_list(self.retry_delays_s)


def jobs_from_env() -> JobsResource:
    settings = load_settings()
    return JobsResource(
        database_url=database_url_env_var(),
        retry_delays_s=format_seconds_list(settings.retry_delays_s),
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
