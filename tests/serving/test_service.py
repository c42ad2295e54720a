"""The replica-side core (videogen.generation.service) and the wire format, without Ray."""

import threading

import pytest

from videogen.errors import JobCanceledError, OutOfMemoryError, TransientError, VideogenError
from videogen.generation.generate import GenerationParams
from videogen.generation.protocol import event_line, parse_event
from videogen.generation.remote import _error_from_event
from videogen.generation.service import LoadedPipeline, ReplicaStats, RequestRecord, error_fields, load, run_generation

PARAMS = GenerationParams(prompt="a fox", negative_prompt="", width=64, height=64, num_frames=9, fps=8, steps=6,
                          guidance_scale=3.0, seed=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from videogen.generation.loader import load_pipeline
    from videogen.generation.registry import BUILTIN_MODELS

    return load_pipeline(BUILTIN_MODELS["tiny"], model_cache=tmp_path_factory.mktemp("models"), device="cpu",
                         cpu_offload=False, vae_tiling=False)


@pytest.mark.parametrize("cancel_at", [1, 3])
def test_a_cancel_stops_the_denoising_within_one_step(tiny, cancel_at):
    stats = ReplicaStats()
    loaded = LoadedPipeline("tiny", tiny, stats)
    record = RequestRecord(request_id="r", model="tiny", total_steps=PARAMS.steps)
    cancel = threading.Event()
    steps = []

    def emit(step, total):
        steps.append((step, total))
        if step == cancel_at:
            cancel.set()  # what the Serve adapter does when the client disconnects

    with pytest.raises(JobCanceledError, match=f"after step {cancel_at} of {PARAMS.steps}"):
        run_generation(loaded, PARAMS, record, emit=emit, cancel=cancel)
    assert steps == [(s, PARAMS.steps) for s in range(1, cancel_at + 1)]
    assert (record.steps_done, record.outcome) == (cancel_at, "canceled") and record.finished >= record.started


def test_one_pipeline_runs_one_generation_at_a_time(tiny):
    """A second request on a pipeline whose previous generation has not returned yet (a client that
    went away while its thread still denoises) waits for it, and both give the frames they give alone."""
    stats = ReplicaStats()
    loaded = LoadedPipeline("tiny", tiny, stats)
    other = GenerationParams(**{**PARAMS.__dict__, "seed": 6, "steps": 4})
    alone = {params.seed: run_generation(loaded, params, RequestRecord(request_id="alone", model="tiny",
                                                                       total_steps=params.steps),
                                         emit=lambda *_: None, cancel=threading.Event()).frames
             for params in (PARAMS, other)}
    records = {name: RequestRecord(request_id=name, model="tiny", total_steps=6) for name in ("first", "second")}
    results, errors = {}, []
    first_denoising, second_called = threading.Event(), threading.Event()

    def hold_at_first_step(step, total):
        if step == 1:
            first_denoising.set()
            assert second_called.wait(60), "the second request was never made"

    def generate(name, params, emit):
        try:
            if name == "second":
                second_called.set()
            results[name] = run_generation(loaded, params, records[name], emit=emit, cancel=threading.Event())
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(f"{name}: {type(error).__name__}: {error}")

    first = threading.Thread(target=generate, args=("first", PARAMS, hold_at_first_step))
    first.start()
    assert first_denoising.wait(60), "the first generation did not start"
    second = threading.Thread(target=generate, args=("second", other, lambda *_: None))
    second.start()
    first.join(120)
    second.join(120)
    assert errors == []
    assert records["second"].started >= records["first"].finished  # one after the other, never both at once
    assert (results["first"].frames == alone[PARAMS.seed]).all()
    assert (results["second"].frames == alone[other.seed]).all()


def test_loads_and_unloads_are_counted(tiny):
    stats = ReplicaStats()
    loaded = load("tiny", lambda name: tiny, stats)
    record = RequestRecord(request_id="r", model="tiny", total_steps=PARAMS.steps)
    video = run_generation(loaded, PARAMS, record, emit=lambda *_: None, cancel=threading.Event())
    assert video.frames.shape == (9, 64, 64, 3) and record.outcome == "succeeded"
    loaded.unload()
    loaded.unload()  # idempotent: Serve's multiplexer may call it and the object may be collected
    body = stats.to_json()
    assert body["model_loads"] == {"tiny": 1} and body["model_unloads"] == {"tiny": 1}
    assert body["requests"] == [] and loaded.pipeline is None


def test_errors_travel_with_their_class():
    oom = error_fields(OutOfMemoryError("CUDA out of memory: 2 GiB more"))
    assert oom == {"code": "out_of_memory", "message": "CUDA out of memory: 2 GiB more", "transient": True}
    assert isinstance(_error_from_event({"event": "error", **oom}), OutOfMemoryError)
    crash = _error_from_event({"event": "error", **error_fields(RuntimeError("boom"))})
    assert type(crash) is VideogenError and crash.code == "generation_error" and "RuntimeError: boom" in crash.message
    transient = _error_from_event({"event": "error", "code": "storage_unavailable", "message": "m", "transient": True})
    assert isinstance(transient, TransientError)


def test_events_are_one_json_object_per_line():
    line = event_line("progress", step=2, total=4)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_event(line) == {"event": "progress", "step": 2, "total": 4}
    with pytest.raises(ValueError, match="unreadable event"):
        parse_event(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ValueError, match="without a type"):
        parse_event(b'{"step": 1}')


def test_replica_metrics_count_steps_loads_and_outcomes_without_ray(tiny):
    from prometheus_client import REGISTRY
    from prometheus_client.parser import text_string_to_metric_families

    stats = ReplicaStats()
    stats.metrics.declare_models(["tiny", "other"])
    loaded = load("tiny", lambda name: tiny, stats)
    record = RequestRecord(request_id="job-123", model="tiny", total_steps=PARAMS.steps)
    stats.request_started(record)
    assert stats.metrics.in_flight._value.get() == 1
    run_generation(loaded, PARAMS, record, emit=lambda *_: None, cancel=threading.Event())
    stats.request_finished(record)
    never_ran = RequestRecord(request_id="job-124", model="other", total_steps=3)
    stats.request_started(never_ran)
    stats.request_finished(never_ran, failed=True)  # its model could not be loaded
    body, content_type = stats.metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples[("videogen_generation_denoising_steps_total", (("model", "tiny"),))] == PARAMS.steps
    assert samples[("videogen_generation_denoising_steps_total", (("model", "other"),))] == 0  # declared
    assert samples[("videogen_generation_denoising_seconds_total", (("model", "tiny"),))] > 0
    assert samples[("videogen_generation_model_loads_total", (("model", "tiny"),))] == 1
    assert samples[("videogen_generation_model_load_seconds_count", (("model", "tiny"),))] == 1
    assert samples[("videogen_generation_requests_total", (("model", "tiny"), ("outcome", "succeeded")))] == 1
    assert samples[("videogen_generation_requests_total", (("model", "other"), ("outcome", "failed")))] == 1
    assert samples[("videogen_generation_requests_in_flight", ())] == 0 and never_ran.outcome == "failed"
    assert not any("job-12" in v for _, labels in samples for _, v in labels)
    # Each replica's own registry: nothing in the process-global one.
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("videogen_generation")]


def test_replica_metrics_are_served_on_a_port_of_their_own():
    import requests

    from tests.conftest import free_port
    from videogen.generation.metrics import GenerationMetrics

    metrics, other = GenerationMetrics(), GenerationMetrics()
    port = free_port()
    try:
        assert metrics.serve(port, addr="127.0.0.1")
        metrics.in_flight.inc()  # what a scrape sees while a generation holds the Serve request slot
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "videogen_generation_requests_in_flight 1.0" in text
        assert not other.serve(port, addr="127.0.0.1")  # the port is taken: a warning, the replica still works
    finally:
        metrics.close()


def test_a_scrape_imports_no_torch_and_a_cpu_process_has_no_gpu_series():
    import subprocess
    import sys

    code = ("import sys; from videogen.generation.service import ReplicaStats; s = ReplicaStats();"
            "body, _ = s.metrics.exposition(); print('torch' in sys.modules, b'gpu_memory' in body)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]
