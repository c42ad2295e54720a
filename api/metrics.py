"""Prometheus metrics of the API process(es) and ``GET /metrics``.

Request metrics are labelled by route template (``/api/v1/jobs/{job_id}``, never the id), method and
status class. With several uvicorn workers, ``videogen serve-api`` gives them a shared
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges every worker's files (prometheus-client's
multiprocess mode), so any worker answers with the totals. The platform metrics (videogen.metrics.platform)
come from PostgreSQL through a cache, the same from every replica.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client import multiprocess

from api.errors import WatchedSend

REQUESTS = Counter("videogen_api_requests", "HTTP requests answered by the API.", ["route", "method", "status_class"])
LATENCY = Histogram("videogen_api_request_duration_seconds", "Time to answer an HTTP request (streams: to the "
                    "end of the stream).", ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
IN_FLIGHT = Gauge("videogen_api_requests_in_flight", "HTTP requests being answered.", multiprocess_mode="livesum")


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by its route template."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        watched = WatchedSend(send)
        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, watched)
        finally:
            IN_FLIGHT.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            status = watched.status or 500  # no answer started: the error middleware outside answers 500
            REQUESTS.labels(template, method, f"{status // 100}xx").inc()
            LATENCY.labels(template, method).observe(time.perf_counter() - started)


def exposition(platform_collector) -> tuple[bytes, str]:
    """The text of ``GET /metrics``: the API metrics of this process (or of every worker, merged in
    multiprocess mode), then the platform's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        api_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(api_registry)
    else:
        api_registry = REGISTRY  # also has the process and Python collectors
    platform_registry = CollectorRegistry()
    platform_registry.register(platform_collector)
    return generate_latest(api_registry) + generate_latest(platform_registry), CONTENT_TYPE_LATEST
