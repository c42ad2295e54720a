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
