"""Live progress over Server-Sent Events, and the limits that hold across API processes."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.api.conftest import another_api, make_account
from tests.api.test_auth import error_of
from tests.api.test_jobs_api import TINY
from tests.waiting import wait_until
from videogen.accounts.ratelimit import SharedRateLimiter
from videogen.lifecycle import JobStore


def read_stream(url: str, headers: dict[str, str], events: list[dict], done: threading.Event) -> None:
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "job":
                events.append(json.loads(line.removeprefix("data: ")))
    done.set()  # the server closed the stream


def test_the_stream_follows_each_change_and_closes_on_a_final_status(api, user):
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
    events: list[dict] = []
    done = threading.Event()
    reader = threading.Thread(target=read_stream, daemon=True,
                              args=(f"{api.url}/api/v1/jobs/{job['id']}/stream", user.headers, events, done))
    reader.start()
    store = JobStore(api.engine)

    def seen(status: str, progress: float = 0.0):
        wait_until(lambda: events and events[-1]["status"] == status and events[-1]["progress"] == progress,
                   30, f"the stream to show {status} at {progress}", poll_s=0.05)

    seen("pending")
    store.queue.mark_queued({job["id"]: "run-1"})
    seen("queued")
    store.runs.claim(job["id"], "run-1")
    seen("running")
    store.runs.set_progress(job["id"], stage="generate", progress=0.5)
    seen("running", 0.5)
    assert events[-1]["stage"] == "generate"
    store.operator.cancel(job["id"])
    seen("canceled", 0.5)
    assert done.wait(10), "the stream stayed open after a final status"
    assert [e["status"] for e in events] == ["pending", "queued", "running", "running", "canceled"]


def test_a_stream_of_another_users_job_is_404(api, user):
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
    other = make_account(api)
    with api.client(**other.headers) as http:
        assert error_of(http.get(f"/api/v1/jobs/{job['id']}/stream"))[:2] == (404, "not_found")


def test_the_rate_limiter_counts_per_user_and_second_across_instances(api):
    # Two limiters over one database stand for two API processes: they share every window.
    first, second = SharedRateLimiter(api.engine, 3), SharedRateLimiter(api.engine, 3)
    t = 1_900_000_000.25
    decisions = [(first if i % 2 else second).hit("ana", now=t) for i in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert decisions[-1].retry_after_s == 1 and decisions[-1].count == 5
    assert first.hit("bo", now=t).allowed  # another user has a window of their own
    assert second.hit("ana", now=t + 1).allowed  # the next second starts afresh


def test_two_api_processes_share_the_rate_limit(api, tmp_path):
    limit = 3
    with another_api(api, tmp_path, VIDEOGEN_API_RATE_LIMIT_PER_S=str(limit)) as url, \
            another_api(api, tmp_path / "b", VIDEOGEN_API_RATE_LIMIT_PER_S=str(limit)) as url2:
        # Within one one-second window: one request to the first process, then `limit` to the second.
        # With a shared count the second process refuses its last one (limit + 1 in the window); with
        # a count per process it would allow all of them. A burst that crossed a second boundary
        # proves nothing and is sent again from a fresh user (a bounded number of times).
        for _ in range(5):
            caller = make_account(api)
            with httpx.Client(headers=caller.headers, timeout=30) as http:
                http.get(f"{url}/health")  # connections open before the clock
                http.get(f"{url2}/health")
                started = time.time()
                responses = [http.get(f"{url}/api/v1/me")] + [http.get(f"{url2}/api/v1/me") for _ in range(limit)]
                if int(started) == int(time.time()):
                    break
        else:
            raise AssertionError("no burst of 4 requests fitted in one second")
    assert [r.status_code for r in responses] == [200] * limit + [429]
    limited = responses[-1]
    assert limited.headers["Retry-After"] == "1"
    assert error_of(limited) == (429, "rate_limited", f"more than {limit} requests per second; retry in 1 s")


def test_the_active_jobs_cap_is_429_and_lifts_when_a_job_ends(api, tmp_path):
    owner = make_account(api)
    with another_api(api, tmp_path, VIDEOGEN_API_MAX_ACTIVE_JOBS="2") as url, \
            httpx.Client(base_url=url, headers=owner.headers, timeout=30) as http:
        first = http.post("/api/v1/jobs", json=TINY).json()
        assert http.post("/api/v1/jobs", json=TINY).status_code == 201
        refused = http.post("/api/v1/jobs", json=TINY)
        assert error_of(refused) == (429, "too_many_active_jobs", "2 of your jobs are pending, queued or running "
                                     "(the limit is 2); submit again when one has finished")
        assert refused.headers["Retry-After"] == "5"
        http.post(f"/api/v1/jobs/{first['id']}/cancel")
        assert http.post("/api/v1/jobs", json=TINY).status_code == 201
