"""GET /metrics: API request metrics by route template (merged over uvicorn workers) and the platform
metrics computed from PostgreSQL, read by prometheus-client's own parser."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import make_account, start_api
from tests.api.test_jobs_api import TINY
from tests.waiting import wait_until
from videogen.db.schema import jobs
from videogen.devtools.processes import stop_session


def samples(url: str) -> dict[tuple[str, tuple], float]:
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(metrics, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_template_over_two_workers(api, tmp_path):
    process, url, _ = start_api(api.database_url, tmp_path, jwt_secret=api.jwt_secret, args=("--workers", "2"))
    owner = make_account(api)
    try:
        before = samples(url)
        with httpx.Client(base_url=url, headers=owner.headers, timeout=30) as http:
            ids = [http.post("/api/v1/jobs", json=TINY).json()["id"] for _ in range(3)]
            for job_id in ids:
                assert http.get(f"/api/v1/jobs/{job_id}").status_code == 200
            assert http.get("/api/v1/jobs/999999999").status_code == 404
            assert http.get("/no/such/route").status_code == 404
        after = samples(url)
    finally:
        stop_session(process, grace_s=20)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/api/v1/jobs/{job_id}"
    assert delta("videogen_api_requests_total", route="/api/v1/jobs", method="POST", status_class="2xx") == 3
    assert delta("videogen_api_requests_total", route=route, method="GET", status_class="2xx") == 3
    assert delta("videogen_api_requests_total", route=route, method="GET", status_class="4xx") == 1
    assert delta("videogen_api_requests_total", route="unmatched", method="GET", status_class="4xx") == 1
    assert delta("videogen_api_request_duration_seconds_count", route=route, method="GET") == 4
    labels = {value for (_, pairs) in after for _, value in pairs}
    assert not {str(i) for i in ids} & labels and owner.id not in labels  # bounded labels: no ids, no users


def test_platform_metrics_equal_the_jobs_table(api, user):
    with api.client(**user.headers) as http:
        job_id = http.post("/api/v1/jobs", json=TINY).json()["id"]
        http.post(f"/api/v1/jobs/{job_id}/cancel")

    def table() -> dict[tuple[str, str], int]:
        with api.engine.connect() as conn:
            return {(r.status, r.model): r.n for r in conn.execute(
                sa.select(jobs.c.status, jobs.c.model, sa.func.count().label("n")).group_by(jobs.c.status, jobs.c.model))}

    def reported() -> dict[tuple[str, str], int]:
        metrics = samples(api.url)
        return {(dict(pairs)["status"], dict(pairs)["model"]): int(v)
                for (name, pairs), v in metrics.items() if name == "videogen_jobs"}

    # The platform metrics are cached for 5 s: wait (with a deadline) until they show this job.
    wait_until(lambda: reported() == table(), 30, "the platform metrics to equal the jobs table", poll_s=0.5)
    metrics = samples(api.url)
    assert value(metrics, "videogen_jobs_oldest_pending_age_seconds") >= 0
    assert ("videogen_credits_consumed_total", ()) in metrics and ("videogen_gpu_seconds_total", ()) in metrics


def test_request_metrics_can_be_turned_off_and_platform_metrics_stay(api, user, tmp_path):
    from tests.api.conftest import another_api

    with another_api(api, tmp_path, VIDEOGEN_API_REQUEST_METRICS="0") as url, \
            httpx.Client(base_url=url, headers=user.headers, timeout=30) as http:
        assert http.get("/api/v1/me").status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    # Declared (so dashboards keep their series names) but never counted.
    assert families["videogen_api_requests"].samples == []
    assert families["videogen_api_request_duration_seconds"].samples == []
    assert [s.value for s in families["videogen_api_requests_in_flight"].samples] == [0.0]
    assert families["videogen_jobs"].samples
