"""Deliver due webhooks (``videogen.webhooks.deliver_due``): Dagster, not the API, sends them, so a
delivery survives any restart; each tick attempts a bounded number and records every attempt."""

import os

import dagster as dg

from resources.jobs import JobsResource
from videogen.config import load_settings
from videogen.webhooks import deliver_due
from sensors.log import log


@dg.sensor(
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="POSTs the signed final status of jobs that carry a callback_url; retries with backoff.",
)
def webhook_deliveries_sensor(context: dg.SensorEvaluationContext, jobs: JobsResource) -> dg.SkipReason:
    settings = load_settings(os.environ)
    results = deliver_due(jobs.store().engine, allow_private=settings.webhook_allow_private)
    for result in results:
        log.info(f"webhook delivery {result.delivery_id} attempt {result.attempt}: {result.state}"
                 + (f" ({result.error})" if result.error else ""), extra={"sensor": "webhook_deliveries_sensor"})
    return dg.SkipReason(f"{len(results)} webhook attempt(s)" if results else "no webhook due")
