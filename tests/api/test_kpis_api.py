"""GET /api/v1/kpis/daily over real HTTP: rows written straight into kpi_spark_daily come back in
order and typed, for staff only, and a bad range is a 422 that says what is wrong."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from tests.api.test_auth import error_of
from videogen.kpi.tables import kpi_spark_daily

COMPUTED_AT = datetime(2021, 3, 10, 4, 0, tzinfo=UTC)


def kpi_row(day: date, **values) -> dict:
    row = {"job_date": day, "total_jobs": 0, "succeeded_jobs": 0, "failed_jobs": 0, "rejected_jobs": 0,
           "canceled_jobs": 0, "success_rate": None, "active_users": 0, "avg_duration_s": None,
           "median_duration_s": None, "p95_duration_s": None, "avg_latency_s": None,
           "credits_consumed": Decimal("0"), "gpu_seconds": 0.0, "computed_at": COMPUTED_AT}
    return {**row, **values}


@pytest.fixture(scope="module")
def march_2021(api):
    """Days 1, 2, 4 and 5 of March 2021 (the 3rd not computed yet), inserted out of order."""
    rows = [
        kpi_row(date(2021, 3, 4), total_jobs=10, succeeded_jobs=6, failed_jobs=2, rejected_jobs=1, canceled_jobs=1,
                success_rate=0.75, active_users=3, avg_duration_s=12.5, median_duration_s=11.0, p95_duration_s=20.25,
                avg_latency_s=30.0, credits_consumed=Decimal("1.4750"), gpu_seconds=75.5),
        kpi_row(date(2021, 3, 2), total_jobs=1, rejected_jobs=1, active_users=1),
        kpi_row(date(2021, 3, 5)),
        kpi_row(date(2021, 3, 1), total_jobs=2, succeeded_jobs=2, success_rate=1.0, active_users=2,
                credits_consumed=Decimal("0.2950"), gpu_seconds=3.25),
    ]
    with api.engine.begin() as conn:
        conn.execute(kpi_spark_daily.insert(), rows)


def test_staff_read_the_days_of_a_range_in_order_and_typed(api, admin, support, march_2021):
    for account in (admin, support):
        with api.client(**account.headers) as http:
            response = http.get("/api/v1/kpis/daily", params={"from": "2021-03-02", "to": "2021-03-04"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["from"], body["to"]) == ("2021-03-02", "2021-03-04")
        assert [day["job_date"] for day in body["days"]] == ["2021-03-02", "2021-03-04"]  # the 3rd: not computed
        assert body["days"][1] == {
            "job_date": "2021-03-04", "total_jobs": 10, "succeeded_jobs": 6, "failed_jobs": 2, "rejected_jobs": 1,
            "canceled_jobs": 1, "success_rate": 0.75, "active_users": 3, "avg_duration_s": 12.5,
            "median_duration_s": 11.0, "p95_duration_s": 20.25, "avg_latency_s": 30.0, "credits_consumed": "1.4750",
            "gpu_seconds": 75.5, "computed_at": "2021-03-10T04:00:00Z"}
        assert body["days"][0]["success_rate"] is None and body["days"][0]["avg_duration_s"] is None


def test_one_day_and_a_range_without_rows(api, admin, march_2021):
    with api.client(**admin.headers) as http:
        one = http.get("/api/v1/kpis/daily", params={"from": "2021-03-01", "to": "2021-03-01"}).json()
        none = http.get("/api/v1/kpis/daily", params={"from": "2019-01-01", "to": "2019-12-31"}).json()
        everything = http.get("/api/v1/kpis/daily", params={"from": "2021-01-01", "to": "2021-12-31"}).json()
    assert [(d["job_date"], d["credits_consumed"], d["gpu_seconds"]) for d in one["days"]] == [
        ("2021-03-01", "0.2950", 3.25)]
    assert none == {"from": "2019-01-01", "to": "2019-12-31", "days": []}
    assert [d["job_date"] for d in everything["days"]] == ["2021-03-01", "2021-03-02", "2021-03-04", "2021-03-05"]


def test_a_user_is_refused_and_an_anonymous_caller_too(api, user, march_2021):
    with api.client(**user.headers) as http:
        refused = http.get("/api/v1/kpis/daily", params={"from": "2021-03-01", "to": "2021-03-05"})
    assert error_of(refused) == (403, "staff_only", "this action needs the admin or support role")
    with api.client() as http:
        anonymous = http.get("/api/v1/kpis/daily", params={"from": "2021-03-01", "to": "2021-03-05"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"


def test_the_range_is_at_most_366_days_and_not_reversed(api, support):
    with api.client(**support.headers) as http:
        leap_year = http.get("/api/v1/kpis/daily", params={"from": "2024-01-01", "to": "2024-12-31"})
        too_long = http.get("/api/v1/kpis/daily", params={"from": "2024-01-01", "to": "2025-01-01"})
        reversed_ = http.get("/api/v1/kpis/daily", params={"from": "2021-03-05", "to": "2021-03-01"})
    assert leap_year.status_code == 200 and leap_year.json()["days"] == []
    assert error_of(too_long) == (
        422, "date_range_too_long",
        "the range 2024-01-01 to 2025-01-01 covers 367 days; ask for at most 366 days at a time")
    assert error_of(reversed_) == (422, "invalid_date_range", "from (2021-03-05) is after to (2021-03-01)")


def test_missing_and_malformed_dates(api, admin):
    with api.client(**admin.headers) as http:
        missing = http.get("/api/v1/kpis/daily", params={"from": "2021-03-01"})
        malformed = http.get("/api/v1/kpis/daily", params={"from": "2021-02-30", "to": "2021-03-01"})
        not_a_date = http.get("/api/v1/kpis/daily", params={"from": "yesterday", "to": "2021-03-01"})
    assert error_of(missing) == (422, "invalid_parameter", "query.to: required")
    for response in (malformed, not_a_date):
        status, code, message = error_of(response)
        assert (status, code) == (422, "invalid_parameter") and message.startswith("query.from: "), message


def test_the_route_is_documented(api):
    with api.client() as http:
        operation = http.get("/openapi.json").json()["paths"]["/api/v1/kpis/daily"]["get"]
    assert {(p["name"], p["in"], p["required"]) for p in operation["parameters"]} >= {
        ("from", "query", True), ("to", "query", True)}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/KpiDailyOut")


def test_the_per_model_rows_for_staff_only(api, admin, support, user):
    from videogen.kpi.tables import kpi_spark_daily_by_model

    rows = [{"job_date": date(2021, 4, 2), "model": model, "jobs": jobs, "succeeded_jobs": ok, "failed_jobs": bad,
             "success_rate": ok / (ok + bad) if ok + bad else None, "median_duration_s": 4.0 if ok else None,
             "p95_duration_s": 6.5 if ok else None, "gpu_seconds": 12.0 * ok, "credits_consumed": Decimal("0.1475") * ok,
             "computed_at": COMPUTED_AT}
            for model, jobs, ok, bad in (("tiny-b", 2, 0, 0), ("tiny", 5, 3, 1))]
    rows.append({**rows[1], "job_date": date(2021, 4, 9)})  # outside the range asked for
    with api.engine.begin() as conn:
        conn.execute(kpi_spark_daily_by_model.insert(), rows)
    for account in (admin, support):
        with api.client(**account.headers) as http:
            body = http.get("/api/v1/kpis/daily/by-model", params={"from": "2021-04-01", "to": "2021-04-08"}).json()
        assert [(r["job_date"], r["model"]) for r in body["rows"]] == [("2021-04-02", "tiny"), ("2021-04-02", "tiny-b")]
        assert body["rows"][0] == {
            "job_date": "2021-04-02", "model": "tiny", "jobs": 5, "succeeded_jobs": 3, "failed_jobs": 1,
            "success_rate": 0.75, "median_duration_s": 4.0, "p95_duration_s": 6.5, "gpu_seconds": 36.0,
            "credits_consumed": "0.4425", "computed_at": "2021-03-10T04:00:00Z"}
    with api.client(**user.headers) as http:
        refused = http.get("/api/v1/kpis/daily/by-model", params={"from": "2021-04-01", "to": "2021-04-08"})
        assert error_of(refused)[:2] == (403, "staff_only")
    with api.client(**admin.headers) as http:
        reversed_range = http.get("/api/v1/kpis/daily/by-model", params={"from": "2021-04-08", "to": "2021-04-01"})
    assert error_of(reversed_range) == (422, "invalid_date_range", "from (2021-04-08) is after to (2021-04-01)")
