"""The replica's Prometheus metrics (issue 11) read from ``GET /metrics`` of the real Serve app (the
session fixture ``serve_app``: one CPU replica, the tiny models), parsed with prometheus_client's own
parser, against what the requests did and what ``GET /stats`` of the same replica says."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.test_serving import LONG, TINY, stats
from tests.waiting import wait_until
from videogen.errors import JobCanceledError
from videogen.generation.metrics import OUTCOMES
from videogen.generation.remote import RemoteGenerator

PROMPT = "a heron that must never become a label"
REQUEST_ID = "metrics-request-7f3a"  # what a job id travels as: never a label either
LABEL_NAMES = {"model", "outcome", "le", "device"}


def scrape(serve_app) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the replica's /metrics: (sample name, sorted labels) -> value."""
    response = requests.get(serve_app["url"] + "/metrics", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def by_label(samples: dict, name: str, label: str = "model") -> dict[str, float]:
    return {dict(labels)[label]: value for (sample, labels), value in samples.items() if sample == name}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_loads_steps_and_outcomes_of_the_requests_made(serve_app):
    before = scrape(serve_app)
    generator = RemoteGenerator(serve_app["url"], cancel_poll_s=0.05)
    made = [("tiny", TINY), ("tiny-b", TINY), ("tiny-c", TINY), ("tiny", TINY)]  # 3 models, 2 kept: loads
    params = {"tiny": replace(TINY, prompt=PROMPT, steps=3)}
    for model, p in made:
        generator.generate(model, params.get(model, p), request_id=REQUEST_ID)
    seen: list[int] = []
    with pytest.raises(JobCanceledError):
        generator.generate("tiny", LONG, request_id=REQUEST_ID + "-cancel", on_step=lambda s, n: seen.append(s),
                           should_cancel=lambda: len(seen) >= 2)
    # finished: the denoising thread has stopped (the stream can end, and mark the request canceled,
    # while the thread still finishes the step it is in; steps_done is final only then).
    canceled = wait_until(lambda: next((r for r in stats(serve_app)["requests"] if r["request_id"] == REQUEST_ID + "-cancel"
                                        and r["outcome"] != "running" and r["finished"] > 0), None),
                          60, "the canceled request's denoising to stop")
    # In flight goes back to 0 once the canceled stream has ended on the replica.
    after = wait_until(lambda: (s := scrape(serve_app)) and value(s, "videogen_generation_requests_in_flight") == 0 and s,
                       60, "no request in flight")

    replica = stats(serve_app)
    loads = {m: n for m, n in by_label(after, "videogen_generation_model_loads_total").items() if n}
    assert loads == replica["model_loads"]  # the same replica's /stats
    load_counts = by_label(after, "videogen_generation_model_load_seconds_count")  # 0 for a model never loaded
    assert {m: n for m, n in load_counts.items() if n} == {m: float(n) for m, n in replica["model_loads"].items()}
    assert sum(loads.values()) - sum(by_label(before, "videogen_generation_model_loads_total").values()) >= 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    expected_steps = {"tiny": 2 * 3 + canceled["steps_done"], "tiny-b": TINY.steps, "tiny-c": TINY.steps}
    assert canceled["outcome"] == "canceled" and 2 <= canceled["steps_done"] < LONG.steps
    assert {m: delta("videogen_generation_denoising_steps_total", model=m) for m in expected_steps} == expected_steps
    assert all(delta("videogen_generation_denoising_seconds_total", model=m) > 0 for m in expected_steps)
    outcomes = {(m, o): delta("videogen_generation_requests_total", model=m, outcome=o)
                for m in expected_steps for o in OUTCOMES}
    assert {k: v for k, v in outcomes.items() if v} == {
        ("tiny", "succeeded"): 2, ("tiny-b", "succeeded"): 1, ("tiny-c", "succeeded"): 1, ("tiny", "canceled"): 1}

    # Bounded labels only: models and outcomes, never the prompt or the request (job) id.
    labels = {(name, value) for _, sample_labels in after for name, value in sample_labels}
    assert {name for name, _ in labels} <= LABEL_NAMES
    assert {v for n, v in labels if n == "model"} <= {"tiny", "tiny-b", "tiny-c"}
    assert {v for n, v in labels if n == "outcome"} <= set(OUTCOMES)
    assert not [v for _, v in labels if "heron" in v or "metrics-request" in v]
    # A CPU replica has not initialized CUDA: no GPU memory series.
    assert not [name for name, _ in after if name.startswith("videogen_generation_gpu_memory")]
