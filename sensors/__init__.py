"""Sensors: turn `jobs` rows into runs, keep `jobs` consistent with what happened to the runs, and
deliver the webhooks of finished jobs."""

from sensors.job_requests import pending_jobs_sensor
from sensors.job_reconciliation import job_reconciliation_sensor
from sensors.webhooks import webhook_deliveries_sensor

__all__ = ["pending_jobs_sensor", "job_reconciliation_sensor", "webhook_deliveries_sensor"]
