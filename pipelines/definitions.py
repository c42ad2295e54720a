"""Definitions of the generation domain: jobs, sensors, schedule and their resources."""

import dagster as dg

from pipelines.generate_film import generate_film
from pipelines.generate_video import generate_video
from pipelines.retention import purge_expired_outputs, retention_schedule
from pipelines.submit_prompt import submit_prompt
from resources.generation import generation_from_env
from resources.jobs import jobs_from_env
from resources.quality import quality_from_env
from resources.storage import storage_from_env
from sensors import job_reconciliation_sensor, pending_jobs_sensor, webhook_deliveries_sensor


def generation_defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[generate_video, generate_film, submit_prompt, purge_expired_outputs],
        sensors=[pending_jobs_sensor, job_reconciliation_sensor, webhook_deliveries_sensor],
        schedules=[retention_schedule],
        resources={
            "jobs": jobs_from_env(),
            "generation": generation_from_env(),
            "storage": storage_from_env(),
            "quality": quality_from_env(),
        },
    )
