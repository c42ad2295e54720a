"""Sensors: turn `jobs` rows into runs, and keep `jobs` consistent with what happened to the runs."""

from sensors.job_requests import pending_jobs_sensor
from sensors.job_reconciliation import job_reconciliation_sensor

__all__ = ["pending_jobs_sensor", "job_reconciliation_sensor"]
