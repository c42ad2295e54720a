"""The Ray Serve app (serving/app.py) started for real by the session fixture ``serve_app``, with the
real tiny models, over HTTP through RemoteGenerator (what the Dagster op uses)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from tests.waiting import wait_until
from videogen.devtools.processes import session_members
from videogen.errors import JobCanceledError, VideogenError
from videogen.generation.generate import GenerationParams, generate_frames
from videogen.generation.remote import GenerationUnavailableError, RemoteGenerator

TINY = GenerationParams(prompt="a fox", negative_prompt="", width=64, height=64, num_frames=9, fps=8, steps=4,
                        guidance_scale=3.0, seed=11)
LONG = GenerationParams(prompt="a slow fox", negative_prompt="", width=128, height=128, num_frames=25, fps=8,
                        steps=100, guidance_scale=3.0, seed=3)


def stats(serve_app) -> dict:
    return requests.get(serve_app["url"] + "/stats", timeout=60).json()


def ray_logs(serve_app) -> Path:
    found = re.search(r"^ray logs (\S+)$", Path(serve_app["log"]).read_text(), re.MULTILINE)
    assert found, "serve-models prints where Ray keeps its logs"
    return Path(found.group(1))


def replica_lines(logs: Path) -> list[str]:
    return [line for path in sorted((logs / "serve").glob("replica_*.log"))
            for line in path.read_text(errors="replace").splitlines() if line.strip()]


def loaded_models(body: dict) -> set[str]:
    return {m for m, n in body["model_loads"].items() if n > body["model_unloads"].get(m, 0)}


def test_progress_events_arrive_in_order_then_frames_equal_to_the_in_process_path(serve_app, tmp_path):
    steps = []
    remote = RemoteGenerator(serve_app["url"]).generate("tiny", TINY, request_id="order", on_step=lambda *s: steps.append(s))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    from videogen.generation.loader import load_pipeline
    from videogen.generation.registry import BUILTIN_MODELS

    pipeline = load_pipeline(BUILTIN_MODELS["tiny"], model_cache=tmp_path, device="cpu", cpu_offload=False,
                             vae_tiling=False)
    local = generate_frames(pipeline, TINY)
    assert remote.frames.dtype == np.uint8 and remote.frames.shape == (9, 64, 64, 3)
    assert remote.frames.tobytes() == local.frames.tobytes()  # byte-identical for the same seed
    assert remote.seconds > 0


def test_the_model_is_loaded_once_for_ten_consecutive_requests(serve_app):
    before = stats(serve_app)
    already = "tiny" in loaded_models(before)
    generator = RemoteGenerator(serve_app["url"])
    for i in range(10):
        generator.generate("tiny", TINY, request_id=f"warm-{i}")
    after = stats(serve_app)
    assert after["pid"] == before["pid"]  # the same replica all along
    assert after["model_loads"]["tiny"] - before["model_loads"].get("tiny", 0) == (0 if already else 1)
    done = [r for r in after["requests"] if r["request_id"].startswith("warm-")]
    assert len(done) == 10 and all(r["outcome"] == "succeeded" and r["steps_done"] == 4 for r in done)


def test_models_are_multiplexed_on_one_replica_with_least_recently_used_eviction(serve_app):
    generator = RemoteGenerator(serve_app["url"])
    for model in ("tiny-c", "tiny-b"):  # whatever was loaded before: now {tiny-c, tiny-b}, tiny-b newest
        generator.generate(model, TINY)
    before = stats(serve_app)
    assert loaded_models(before) == {"tiny-c", "tiny-b"}
    for model in ("tiny", "tiny-b", "tiny-c"):  # tiny evicts tiny-c; tiny-b is a hit; tiny-c evicts tiny
        generator.generate(model, TINY)
    after = stats(serve_app)

    def delta(kind: str) -> dict:
        return {m: n - before[kind].get(m, 0) for m, n in after[kind].items() if n - before[kind].get(m, 0)}

    assert delta("model_loads") == {"tiny": 1, "tiny-c": 1}
    assert delta("model_unloads") == {"tiny-c": 1, "tiny": 1}
    assert loaded_models(after) == {"tiny-b", "tiny-c"} and after["pid"] == before["pid"]


def test_a_client_that_cancels_stops_the_denoising(serve_app):
    seen = []
    generator = RemoteGenerator(serve_app["url"], cancel_poll_s=0.05)
    with pytest.raises(JobCanceledError):
        generator.generate("tiny", LONG, request_id="cancel-me", on_step=lambda s, n: seen.append(s),
                           should_cancel=lambda: len(seen) >= 2)
    record = wait_until(
        lambda: next((r for r in stats(serve_app)["requests"]
                      if r["request_id"] == "cancel-me" and r["outcome"] != "running" and r["finished"] > 0), None),
        60, "the replica to stop the canceled generation")  # finished: its denoising thread has returned
    assert record["outcome"] == "canceled" and 2 <= record["steps_done"] < LONG.steps
    # The replica is free again: the next request is served.
    assert generator.generate("tiny", TINY).frames.shape == (9, 64, 64, 3)


def replica_log_entries(logs: Path) -> list[dict]:
    entries = []
    for line in replica_lines(logs):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line the replica is still writing
            continue
    return entries


def test_a_second_request_waits_inside_the_replica_and_starts_once_the_first_has_stopped(serve_app):
    """One generation at a time per replica (max_ongoing_requests 2): the second request is taken in by
    the replica while the first generates, waits for its generation slot there, and starts after the
    first's denoising thread has stopped, never beside it. Another model for the second, so that
    only the replica's slot (not the pipeline's own lock) keeps them apart; the first is canceled,
    whose thread may outlive its stream."""
    first_steps: list[int] = []
    release_first = threading.Event()
    outcomes: dict[str, object] = {}

    def call(name: str, model: str, params: GenerationParams, **kwargs) -> None:
        try:
            outcomes[name] = RemoteGenerator(serve_app["url"], cancel_poll_s=0.05).generate(
                model, params, request_id=name, **kwargs)
        except Exception as error:  # noqa: BLE001 - checked below
            outcomes[name] = error

    endless = replace(LONG, steps=10_000)  # runs until it is canceled below
    first = threading.Thread(target=call, args=("slot-first", "tiny", endless), kwargs={
        "on_step": lambda s, n: first_steps.append(s), "should_cancel": release_first.is_set})
    first.start()
    second = None
    try:
        wait_until(lambda: first_steps, 60, "the first request to start denoising")
        second = threading.Thread(target=call, args=("slot-second", "tiny-b", TINY))
        second.start()
        logs = ray_logs(serve_app)
        wait_until(lambda: [e for e in replica_log_entries(logs) if e.get("request_id") == "slot-second"
                            and "waiting for the replica's generation slot" in e.get("message", "")],
                   60, "the replica to log that the second request waits for its generation slot")
        assert first.is_alive() and "slot-second" not in outcomes  # both were in the replica at once
    finally:
        release_first.set()  # the first stops (canceled); the second then has the slot
        first.join(120)
        if second is not None:
            second.join(120)
    assert isinstance(outcomes["slot-first"], JobCanceledError), outcomes["slot-first"]
    assert outcomes["slot-second"].frames.shape == (9, 64, 64, 3)
    records = {r["request_id"]: r for r in stats(serve_app)["requests"] if r["request_id"] in ("slot-first", "slot-second")}
    assert records["slot-first"]["outcome"] == "canceled" and records["slot-second"]["outcome"] == "succeeded"
    assert records["slot-second"]["started"] >= records["slot-first"]["finished"] > 0
    assert records["slot-second"]["received"] < records["slot-first"]["finished"]  # it waited in the replica


def test_bad_requests_get_a_clear_permanent_error(serve_app):
    generator = RemoteGenerator(serve_app["url"])
    with pytest.raises(VideogenError, match="model 'no-such-model' is not registered; available: tiny, tiny-b, tiny-c") as error:
        generator.generate("no-such-model", TINY)
    assert error.value.code == "generation_refused"
    with pytest.raises(GenerationUnavailableError, match="cannot reach the generation service"):
        RemoteGenerator("http://127.0.0.1:9").generate("tiny", TINY)


def replica_pids(serve_app) -> list[int]:
    pids = []
    for pid in session_members(serve_app["process"].pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::ServeReplica:videogen:TextToVideo"):
            pids.append(pid)
    return pids


def test_a_replica_killed_mid_request_fails_the_attempt_as_transient_and_the_job_then_succeeds(serve_app, store_for,
                                                                                                 run_partition_for):
    from videogen.lifecycle import JobRequest

    store = store_for
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", width="128", height="128",
                                                 num_frames="25", steps="30")).job_id
    result = {}
    runner = threading.Thread(target=lambda: result.update(run=run_partition_for(job_id, serve_app["url"])))
    runner.start()
    try:
        wait_until(lambda: (store.reads.get(job_id)["progress"] or 0) > 0, 300, "the job to be generating")
        (replica,) = replica_pids(serve_app)
        os.kill(replica, signal.SIGKILL)
    finally:
        runner.join(timeout=600)
    assert result["run"].success
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded" and row["attempts"] == 1
    # The broken stream is retried; so is any attempt made while Serve is still replacing the replica.
    retried = [e["message"] for e in store.reads.events(job_id) if " of 3 in " in (e["message"] or "")]
    assert retried and retried[0].startswith("generation_unavailable:") and "retry 1 of 3" in retried[0], retried
    assert all(m.startswith("generation_unavailable:") for m in retried), retried
    wait_until(lambda: len(replica_pids(serve_app)) == 1 and replica_pids(serve_app) != [replica], 120,
               "Serve to replace the replica")


def test_the_run_worker_side_imports_neither_torch_nor_diffusers(serve_app):
    code = ("import sys; from resources.generation import GenerationResource; import pipelines.generate_video;"
            f"g = GenerationResource(model_cache='unused', serve_url={serve_app['url']!r}).generator();"
            "from videogen.generation.generate import GenerationParams as P;"
            "v = g.generate('tiny', P('a fox', '', 64, 64, 9, 8, 2, 3.0, 1));"
            "print(v.frames.shape, [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db"},
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(9, 64, 64, 3) []"


@pytest.fixture
def store_for(database_url):
    from videogen.lifecycle import JobStore

    engine = sa.create_engine(database_url)
    yield JobStore(engine)
    engine.dispose()


@pytest.fixture
def run_partition_for(database_url, tmp_path):
    import dagster as dg

    from pipelines.generate_video import generate_video
    from resources.generation import GenerationResource
    from resources.jobs import JobsResource
    from resources.quality import QualityResource
    from resources.storage import StorageResource

    def run(job_id: int, serve_url: str) -> dg.ExecuteInProcessResult:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("video_jobs", [str(job_id)])
            return generate_video.execute_in_process(
                partition_key=str(job_id), instance=instance, raise_on_error=False,
                resources={"jobs": JobsResource(database_url=database_url, retry_delays_s="2,5,10"),
                           "generation": GenerationResource(model_cache=str(tmp_path / "models"), serve_url=serve_url),
                           "quality": QualityResource(),
                           "storage": StorageResource(root=str(tmp_path / "storage"))})
    return run
