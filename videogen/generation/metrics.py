"""Prometheus metrics of one generation replica (issue 11): what the GPU workers do, per replica.

Every Serve replica owns one :class:`GenerationMetrics` with its own ``CollectorRegistry`` (never the
process-global one: each replica answers for itself, and tests may build several in one process).
The series, labels bounded by the model registry (never a request id, a job id or a prompt):

- ``videogen_generation_model_loads_total{model}`` and ``videogen_generation_model_load_seconds{model}``
  (histogram): pipelines loaded by the replica's multiplexer and how long each load took;
- ``videogen_generation_denoising_steps_total{model}`` and
  ``videogen_generation_denoising_seconds_total{model}``: denoising steps done and the seconds they took,
  counted as each step ends (a long generation moves them while it runs). Steps per second is
  ``rate(steps) / rate(seconds)``; the first step's interval starts at the pipeline call, so it also
  holds the prompt encoding;
- ``videogen_generation_requests_in_flight``: generation requests this replica holds now, and
  ``videogen_generation_requests_waiting``: those of them waiting for its one generation slot
  (serving/app.py: one generation at a time; the rest of ``max_ongoing_requests`` wait in the replica);
- ``videogen_generation_requests_total{model,outcome}``: finished requests, outcome one of
  succeeded, canceled, failed;
- ``videogen_generation_gpu_memory_bytes{device}`` and ``videogen_generation_gpu_memory_peak_bytes{device}``:
  the CUDA memory torch's allocator holds for tensors now and at most since the replica started; only
  once the replica has initialized CUDA. A scrape never imports torch nor initializes CUDA.

How Prometheus reaches each replica:

- ``GET /metrics`` on the Serve app's ingress (serving/app.py) answers with the registry of the replica
  that serves the request. Through the Serve HTTP proxy one scrape hits one replica, whichever the
  proxy picks, and it waits for a request slot like a generation request (behind the generations when
  the replica holds ``max_ongoing_requests`` of them): good for a
  local ``videogen serve-models`` (one replica) and the tests, not for a fleet.
- In Kubernetes each replica also serves its registry on a port of its own (``metrics_port`` of
  ``build_app``, :meth:`GenerationMetrics.serve`: a thread in the replica's process, independent of
  Serve's request slots). The RayService's GPU worker pods hold one replica each (one GPU each) and
  declare that port as ``replica-metrics``; the PodMonitor k8s/monitoring/podmonitor.yaml scrapes it on
  every Ray GPU worker pod, so every replica is one target (``instance`` = its pod) and a scrape during
  a generation sees it (requests in flight 1, GPU memory in use).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

OUTCOMES = ("succeeded", "canceled", "failed")
# Pipeline loads: a tiny model on a CPU in a fraction of a second, a large one from a network volume
# onto a GPU in minutes.
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# The gauges of CudaMemoryCollector (present only on a replica that has initialized CUDA).
GPU_MEMORY_BYTES = "videogen_generation_gpu_memory_bytes"
GPU_MEMORY_PEAK_BYTES = "videogen_generation_gpu_memory_peak_bytes"


class CudaMemoryCollector(Collector):
    """GPU memory gauges read from torch at scrape time, only where torch is already imported and CUDA
    initialized by this process (a CPU replica, or one that has loaded nothing yet, exports none)."""

    def collect(self) -> Iterator[Metric]:
        torch = sys.modules.get("torch")  # never import it here: a scrape must stay cheap
        if torch is None or not torch.cuda.is_initialized():
            return
        used = GaugeMetricFamily(GPU_MEMORY_BYTES,
                                 "CUDA memory held by tensors of this replica (torch.cuda.memory_allocated)",
                                 labels=["device"])
        peak = GaugeMetricFamily(GPU_MEMORY_PEAK_BYTES,
                                 "Most CUDA memory held by tensors of this replica since it started "
                                 "(torch.cuda.max_memory_allocated)", labels=["device"])
        for index in range(torch.cuda.device_count()):
            used.add_metric([f"cuda:{index}"], float(torch.cuda.memory_allocated(index)))
            peak.add_metric([f"cuda:{index}"], float(torch.cuda.max_memory_allocated(index)))
        yield used
        yield peak


class GenerationMetrics:
    """The metrics of one replica, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.model_loads = Counter("videogen_generation_model_loads", "Pipelines loaded by this replica",
                                   ["model"], registry=self.registry)
        self.load_seconds = Histogram("videogen_generation_model_load_seconds", "Time to load one pipeline",
                                      ["model"], buckets=LOAD_BUCKETS, registry=self.registry)
        self.steps = Counter("videogen_generation_denoising_steps", "Denoising steps done by this replica",
                             ["model"], registry=self.registry)
        self.denoising_seconds = Counter("videogen_generation_denoising_seconds",
                                         "Seconds spent in denoising steps (the first step's interval "
                                         "includes the prompt encoding)", ["model"], registry=self.registry)
        self.in_flight = Gauge("videogen_generation_requests_in_flight", "Generation requests this replica holds",
                               registry=self.registry)
        self.waiting = Gauge("videogen_generation_requests_waiting",
                             "Requests in this replica waiting for its generation slot", registry=self.registry)
        self.requests = Counter("videogen_generation_requests", "Finished generation requests by outcome",
                                ["model", "outcome"], registry=self.registry)
        self.registry.register(CudaMemoryCollector())
        self._server = None

    def declare_models(self, models: Iterable[str]) -> None:
        """Create the series of every registered model at 0, so that rate() and the load-time quantile
        have a start point before the first load or request of a model."""
        for model in models:
            self.model_loads.labels(model)
            self.load_seconds.labels(model)
            self.steps.labels(model)
            self.denoising_seconds.labels(model)
            for outcome in OUTCOMES:
                self.requests.labels(model, outcome)

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_loads.labels(model).inc()
        self.load_seconds.labels(model).observe(seconds)

    def step_done(self, model: str, seconds: float) -> None:
        self.steps.labels(model).inc()
        self.denoising_seconds.labels(model).inc(seconds)

    def request_finished(self, model: str, outcome: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        self.requests.labels(model, outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of this registry and its content type (``GET /metrics``)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, port: int, addr: str = "0.0.0.0") -> bool:  # all interfaces: scraped from other pods
        """Serve this registry on ``port`` in a thread of this process (the Kubernetes scrape path).
        Returns False, with a warning, when the port is taken (e.g. by another replica on the same
        machine): the replica still works and still answers ``GET /metrics`` on the ingress."""
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as error:
            log.warning("replica metrics not served on port %s: %s", port, error)
            return False
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
