"""What one Serve replica does for one request, as plain Python (the Serve deployment is a thin
adapter over this, and the tests drive it without Ray).

A generation runs in a worker thread (torch releases the GIL while it computes), and reports
each denoising step through ``emit``; the caller's ``cancel`` event is polled after every step, so
a disconnected client stops the denoising within one step. The replica keeps counts a person can
check: model loads per model, and for each recent request its steps and its denoising interval
(the benchmark's busy fraction is computed from those). The same events move the replica's Prometheus
metrics (:mod:`videogen.generation.metrics`, ``ReplicaStats.metrics``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from videogen.errors import JobCanceledError, TransientError, VideogenError
from videogen.generation.generate import GeneratedVideo, GenerationParams, generate_frames
from videogen.generation.metrics import GenerationMetrics


@dataclass
class RequestRecord:
    request_id: str
    model: str
    total_steps: int
    steps_done: int = 0
    received: float = field(default_factory=time.time)  # when the replica took the request in
    started: float = 0.0  # time.time() of the pipeline call
    finished: float = 0.0
    outcome: str = "running"  # running, succeeded, canceled, failed


@dataclass
class ReplicaStats:
    """Counters of one replica, served by ``GET /stats``."""

    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    model_loads: Counter[str] = field(default_factory=Counter)
    model_unloads: Counter[str] = field(default_factory=Counter)
    load_seconds: dict[str, float] = field(default_factory=dict)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=1000))
    metrics: GenerationMetrics = field(default_factory=GenerationMetrics, repr=False, compare=False)

    def request_started(self, record: RequestRecord) -> None:
        """A request begins on this replica (its stream started): listed by /stats, in flight."""
        self.requests.append(record)
        self.metrics.in_flight.inc()

    def request_finished(self, record: RequestRecord, *, failed: bool = False) -> None:
        """The request's stream ended. Its outcome is the generation's; a request that never reached
        the generation failed (``failed``: its model could not be loaded) or was canceled (the client
        left while the model loaded)."""
        if record.outcome == "running":
            record.outcome = "failed" if failed else "canceled"
        self.metrics.in_flight.dec()
        self.metrics.request_finished(record.model, record.outcome)

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica, "pid": os.getpid(), "model_loads": dict(self.model_loads),
                "model_unloads": dict(self.model_unloads), "load_seconds": dict(self.load_seconds),
                "requests": [asdict(r) for r in self.requests]}


class LoadedPipeline:
    """A loaded pipeline as the replica's multiplexer holds it; unloading counts and frees memory."""

    def __init__(self, model: str, pipeline: Any, stats: ReplicaStats) -> None:
        self.model = model
        self.pipeline = pipeline
        self._stats = stats
        # A diffusers pipeline is not thread safe (its scheduler keeps the step index between calls):
        # one generation at a time per pipeline, whatever the replica's request slots say. A request
        # whose client went away can end its handler before its denoising thread has stopped (Serve
        # cancels the handler again while it waits for the thread), freeing the slot early.
        self.in_use = threading.Lock()

    def unload(self) -> None:
        if self.pipeline is None:
            return
        self.pipeline = None
        self._stats.model_unloads[self.model] += 1
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is there wherever a pipeline was loaded
            pass

    # Ray Serve's multiplexer calls __del__ on the models it evicts (least recently used).
    __del__ = unload


def load(model: str, loader: Callable[[str], Any], stats: ReplicaStats) -> LoadedPipeline:
    started = time.perf_counter()
    pipeline = loader(model)
    seconds = time.perf_counter() - started
    stats.model_loads[model] += 1
    stats.load_seconds[model] = round(seconds, 3)
    stats.metrics.model_loaded(model, seconds)
    return LoadedPipeline(model, pipeline, stats)


def run_generation(
    loaded: LoadedPipeline,
    params: GenerationParams,
    record: RequestRecord,
    *,
    emit: Callable[[int, int], None],
    cancel: threading.Event,
) -> GeneratedVideo:
    """Generate, reporting every step through ``emit(step, total)``; stop within one step of ``cancel``."""
    metrics = loaded._stats.metrics
    last = time.perf_counter()

    def on_step(step: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        metrics.step_done(loaded.model, now - last)  # the interval since the previous step ended
        last = now
        record.steps_done = step
        emit(step, total)

    with loaded.in_use:  # waits for a generation on this pipeline that is still stopping
        record.started = time.time()
        last = time.perf_counter()
        try:
            video = generate_frames(loaded.pipeline, params, on_step=on_step, should_cancel=cancel.is_set)
        except JobCanceledError:
            record.outcome = "canceled"
            raise
        except BaseException:
            record.outcome = "failed"
            raise
        finally:
            record.finished = time.time()
    record.outcome = "succeeded"
    return video


def error_fields(error: BaseException) -> dict[str, Any]:
    """How an exception travels to the client: its code, message and whether a retry may help."""
    if isinstance(error, VideogenError):
        return {"code": error.code, "message": error.message, "transient": isinstance(error, TransientError)}
    return {"code": "generation_error", "message": f"{type(error).__name__}: {error}", "transient": False}
