"""The jobs table and the lifecycle policy (retry backoff, heartbeat timeout)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.database import PostgresResource, database_url_env_var
from videogen.config import format_seconds_list, load_settings, parse_seconds_list, setting_default
from videogen.heartbeat import JobHeartbeat
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

    # Heartbeats this run started (one per job), written until the run ends.
    _heartbeats: dict[tuple[int, str], JobHeartbeat] = PrivateAttr(default_factory=dict)

    def store(self) -> JobStore:
        return JobStore(self.get_engine())

    def keep_alive(self, job_id: int, run_id: str) -> JobHeartbeat:
        """The job's heartbeat for the rest of this run, started on the first call.

        It must cover the whole run, not each stage: between stages a run may wait a long time for a
        generation slot (the op pool), and a silent job would look like one whose worker died. It stops
        when the run's resources are torn down, or with the process (the thread is a daemon)."""
        key = (job_id, run_id)
        if key not in self._heartbeats:
            self._heartbeats[key] = JobHeartbeat(self.store(), job_id, run_id).start()
        return self._heartbeats[key]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for heartbeat in self._heartbeats.values():
            heartbeat.stop()
        self._heartbeats.clear()

    def retry_delays(self) -> tuple[float, ...]:
        return parse_seconds_list(self.retry_delays_s)


def jobs_from_env() -> JobsResource:
    settings = load_settings()
    return JobsResource(
        database_url=database_url_env_var(),
        retry_delays_s=format_seconds_list(settings.retry_delays_s),
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )
