"""What the API's request metrics cost: submissions/s and one request's latency with the metrics
middleware on and off (``VIDEOGEN_API_REQUEST_METRICS``), and how long a scrape of ``/metrics`` takes.

    .venv/bin/python -m benchmarks.metrics_overhead [--rounds 3] [--submissions 600] [--clients 8]

Each round starts one API process with the middleware on and one with it off, over the same
database, side by side: submissions/s are measured on one then the other (the order alternates
between rounds), one request's latency by sequential GETs alternating between the two (so that
anything else the machine does weighs on both alike); medians over the rounds are quoted, and the
middleware's own cost measured in process. Target (issue 11):
under 3 % overhead on submissions/s and on latency. The scrape is timed on a table of 10,000 jobs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from benchmarks.api_benchmark import BODY, api_server, create_database, http_load, make_users, postgres

TARGET_OVERHEAD = 0.03


def submissions_per_s(url: str, users, submissions: int, clients: int) -> tuple[float, int]:
    load = http_load(url, submissions, clients, lambda i: (
        "POST", "/api/v1/jobs", {"X-API-Key": users[i % len(users)].key}, {"prompt": f"overhead {i}", **BODY}),
        keep=lambda r: r.json()["id"])
    load.check(201, "submissions")
    return load.rate, next(r for r in load.results if isinstance(r, int))


def interleaved_latency(urls: dict[str, str], job_ids: dict[str, int], key: str, probes: int) -> dict[str, float]:
    """One request at a time, alternating between the servers, so that whatever else the machine does
    in the meantime weighs on both alike; the median per server."""
    samples: dict[str, list[float]] = {mode: [] for mode in urls}
    clients = {mode: httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) for mode, url in urls.items()}
    try:
        for i in range(probes * len(urls)):
            mode = list(urls)[i % len(urls)]
            started = time.perf_counter()
            assert clients[mode].get(f"/api/v1/jobs/{job_ids[mode]}").status_code == 200
            samples[mode].append(time.perf_counter() - started)
    finally:
        for client in clients.values():
            client.close()
    return {mode: statistics.median(values) for mode, values in samples.items()}


def middleware_cost_s(n: int = 20_000) -> float:
    """The middleware alone, in process, around an ASGI app that answers at once."""
    import asyncio

    from api.metrics import RequestMetrics

    class Route:
        path = "/api/v1/jobs/{job_id}"

    async def app(scope, receive, send):
        scope["route"] = Route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def nothing(*_):
        return {"type": "http.request"}

    async def timed(asgi) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await asgi({"type": "http", "path": "/api/v1/jobs/1", "method": "GET"}, nothing, nothing)
        return (time.perf_counter() - started) / n

    return asyncio.run(timed(RequestMetrics(app))) - asyncio.run(timed(app))


def scrape_seconds(url: str, times: int) -> float:
    with httpx.Client(base_url=url, timeout=30) as http:
        http.get("/metrics")  # fills the platform collector's cache
        samples = []
        for _ in range(times):
            started = time.perf_counter()
            assert http.get("/metrics").status_code == 200
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--submissions", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--probes", type=int, default=500)
    args = parser.parse_args(argv)

    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="videogen-metrics-bench-") as tmp, postgres(Path(tmp)) as pg:
        work = Path(tmp)
        app_url = create_database(pg.admin_url, migrate=True)
        engine = sa.create_engine(app_url)
        users = make_users(engine, 20, "1000000")
        for round_ in range(args.rounds):
            # Both servers up at once; submissions measured one server after the other (the order
            # alternates between rounds), latency interleaved request by request.
            with api_server(app_url, work, 1, {"VIDEOGEN_API_REQUEST_METRICS": "1"}) as on, \
                    api_server(app_url, work, 1, {"VIDEOGEN_API_REQUEST_METRICS": "0"}) as off:
                urls = {"on": on.url, "off": off.url}
                job_ids = {}
                for mode in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                    submissions_per_s(urls[mode], users, args.submissions // 4, args.clients)  # warm-up
                    rate, job_ids[mode] = submissions_per_s(urls[mode], users, args.submissions, args.clients)
                    results[mode].append({"rate": rate})
                for mode, latency in interleaved_latency(urls, job_ids, users[0].key, args.probes).items():
                    results[mode][-1]["latency_s"] = latency
        with engine.begin() as conn:  # the scrape on a table of 10,000 jobs
            count = conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one()
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) SELECT 'bench', 'p', "
                                 "(ARRAY['pending','succeeded','failed'])[1 + g % 3] FROM generate_series(1, :n) g"),
                         {"n": max(0, 10_000 - count)})
        with api_server(app_url, work, 1) as api:
            scrape = scrape_seconds(api.url, 30)
        engine.dispose()

    med = lambda mode, key: statistics.median(r[key] for r in results[mode])  # noqa: E731
    rate_on, rate_off = med("on", "rate"), med("off", "rate")
    lat_on, lat_off = med("on", "latency_s"), med("off", "latency_s")
    rate_cost, latency_cost = 1 - rate_on / rate_off, lat_on / lat_off - 1
    print(f"API request metrics, {args.rounds} rounds, {args.submissions} submissions from {args.clients} clients "
          f"and {args.probes} sequential GETs per process; medians")
    print(f"{'':34}{'metrics on':>12}{'metrics off':>13}{'overhead':>10}{'target':>9}")
    print(f"{'submissions/s':34}{rate_on:12.1f}{rate_off:13.1f}{rate_cost:10.1%}{'< 3 %':>9}")
    print(f"{'GET /api/v1/jobs/{id} latency (ms)':34}{lat_on * 1000:12.2f}{lat_off * 1000:13.2f}{latency_cost:10.1%}"
          f"{'< 3 %':>9}")
    print(f"the middleware alone, in process: {middleware_cost_s() * 1e6:.1f} µs per request")
    print(f"GET /metrics with 10,000 jobs: {scrape * 1000:.1f} ms median of 30 (cached platform collector)")
    met = rate_cost < TARGET_OVERHEAD and latency_cost < TARGET_OVERHEAD
    print("target met" if met else "target NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
