"""Fixtures for the KPI tests: one local SparkSession for the whole test session, a data set with
every status and the awkward days, and an independent (pure Python) KPI computation to compare with.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from videogen.kpi.config import JdbcSource, SparkConfig
from videogen.kpi.dates import DayRange

STATUSES = ("pending", "queued", "running", "succeeded", "failed", "rejected", "canceled")

# The data set's days (see `kpi_dataset`).
MIXED = date(2025, 3, 10)  # every status, several users and models, NULL durations, crosses midnight
EMPTY = date(2025, 3, 11)  # no job at all
ONLY_REJECTED = date(2025, 3, 12)
BOUNDARIES = date(2025, 3, 13)  # midnight exactly, a non-UTC offset, a single succeeded job
BUSY = date(2025, 3, 14)  # 240 random jobs: percentiles interpolate between ranks
DATASET_DAYS = DayRange(MIXED, BUSY)


@pytest.fixture(scope="session")
def spark():
    from videogen.kpi.session import build_spark_session

    # Two cores are shared with other test sessions: two local threads, few shuffle partitions.
    session = build_spark_session(
        SparkConfig(master="local[2]", app_name="videogen-kpi-tests", conf={"spark.sql.shuffle.partitions": "2"})
    )
    yield session
    session.stop()


@pytest.fixture
def jdbc(database_url: str) -> JdbcSource:
    return JdbcSource.from_sqlalchemy_url(database_url)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def job(
    user: str,
    status: str,
    created: datetime,
    *,
    model: str = "tiny",
    started: datetime | None = None,
    finished: datetime | None = None,
    gpu_seconds: float | None = None,
    credits: str | None = None,
) -> dict[str, Any]:
    return {
        "user_id": user,
        "prompt": f"a prompt by {user}",
        "model": model,
        "status": status,
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        "gpu_seconds": gpu_seconds,
        "credits": Decimal(credits) if credits is not None else None,
    }


def insert_jobs(engine: sa.Engine, jobs: Sequence[dict[str, Any]]) -> None:
    columns = list(jobs[0])
    statement = sa.text(
        f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    with engine.begin() as conn:
        conn.execute(statement, list(jobs))


def _mixed_day() -> list[dict[str, Any]]:
    d = "2025-03-10"
    rows = [
        job("ana", "succeeded", ts(f"{d}T08:00:00+00:00"), started=ts(f"{d}T08:00:05+00:00"),
            finished=ts(f"{d}T08:01:05.250000+00:00"), gpu_seconds=55.5, credits="1.2500"),
        job("ana", "succeeded", ts(f"{d}T09:00:00+00:00"), model="ltx-video", started=ts(f"{d}T09:00:01+00:00"),
            finished=ts(f"{d}T09:02:31+00:00"), gpu_seconds=140.0, credits="3.0000"),
        job("bob", "succeeded", ts(f"{d}T10:00:00+00:00"), model="wan-2.1", started=ts(f"{d}T10:00:10+00:00"),
            finished=ts(f"{d}T10:00:40.000001+00:00"), gpu_seconds=None, credits="0.5000"),
        # succeeded without started_at: counted, but no duration (NULLs ignored); it has a latency.
        job("bob", "succeeded", ts(f"{d}T11:00:00+00:00"), finished=ts(f"{d}T11:05:00+00:00"), credits=None),
        job("cleo", "failed", ts(f"{d}T12:00:00+00:00"), started=ts(f"{d}T12:00:02+00:00"),
            finished=ts(f"{d}T12:00:09+00:00"), gpu_seconds=7.0),
        job("cleo", "failed", ts(f"{d}T13:00:00+00:00"), model="ltx-video"),
        job("dan", "rejected", ts(f"{d}T14:00:00+00:00"), model="no-such-model"),
        job("dan", "canceled", ts(f"{d}T15:00:00+00:00"), credits="0.1000"),
        job("eve", "pending", ts(f"{d}T16:00:00+00:00")),
        job("eve", "queued", ts(f"{d}T17:00:00+00:00")),
        job("eve", "running", ts(f"{d}T18:00:00+00:00"), started=ts(f"{d}T18:00:03+00:00"), gpu_seconds=1.5),
        # created before midnight UTC, finished the next day: belongs to the day it was created.
        job("fay", "succeeded", ts(f"{d}T23:59:50+00:00"), model="wan-2.1", started=ts(f"{d}T23:59:55+00:00"),
            finished=ts("2025-03-11T00:03:20+00:00"), gpu_seconds=200.25, credits="4.4444"),
    ]
    return rows


def _busy_day(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    base = datetime(2025, 3, 14, tzinfo=UTC)
    rows = []
    for i in range(240):
        created = base + timedelta(seconds=rng.uniform(0, 86_399))
        status = rng.choice(("succeeded", "succeeded", "succeeded", "failed", "rejected", "canceled", "running"))
        started = finished = None
        if status in ("succeeded", "failed", "running"):
            started = created + timedelta(microseconds=rng.randint(0, 30_000_000))
        if status in ("succeeded", "failed"):
            # Some equal durations on purpose (ties), the rest with microseconds.
            seconds = 60 if i % 17 == 0 else rng.uniform(1, 900)
            finished = started + timedelta(seconds=seconds)
        rows.append(
            job(f"user{rng.randint(1, 25)}", status, created, model=rng.choice(("tiny", "ltx-video", "wan-2.1")),
                started=started, finished=finished,
                gpu_seconds=round(rng.uniform(0, 300), 3) if rng.random() < 0.8 else None,
                credits=f"{rng.uniform(0, 5):.4f}" if rng.random() < 0.8 else None)
        )
    return rows


def dataset_jobs() -> list[dict[str, Any]]:
    return [
        # Just outside the range, on both sides.
        job("zed", "succeeded", ts("2025-03-09T23:59:59.999999+00:00"), started=ts("2025-03-10T00:00:01+00:00"),
            finished=ts("2025-03-10T00:00:05+00:00"), gpu_seconds=1.0, credits="1.0000"),
        job("zed", "failed", ts("2025-03-15T00:00:00+00:00")),
        *_mixed_day(),
        job("gus", "rejected", ts("2025-03-12T03:00:00+00:00")),
        job("gus", "rejected", ts("2025-03-12T04:00:00+00:00"), credits="0.0000"),
        job("hal", "rejected", ts("2025-03-12T05:00:00+00:00")),
        # Midnight exactly belongs to the day it starts.
        job("ivy", "succeeded", ts("2025-03-13T00:00:00+00:00"), started=ts("2025-03-13T00:00:30+00:00"),
            finished=ts("2025-03-13T00:10:30+00:00"), gpu_seconds=600.0, credits="2.0000"),
        # 01:30 at UTC+2 on the 14th is 23:30 UTC on the 13th.
        job("ivy", "canceled", ts("2025-03-14T01:30:00+02:00")),
        *_busy_day(),
    ]


@pytest.fixture
def kpi_dataset(engine: sa.Engine) -> list[dict[str, Any]]:
    jobs = dataset_jobs()
    insert_jobs(engine, jobs)
    return jobs


# ------------------------------------------------------------------ independent (Python) computation


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont, by hand: linear interpolation at position fraction * (n - 1)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    # statistics.quantiles(method="inclusive") is the same interpolation (R type 7).
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {0.5: statistics.median(values), 0.95: cuts[94]}[fraction]


def expected_daily(jobs: Sequence[dict[str, Any]], days: DayRange) -> dict[date, dict[str, Any]]:
    out = {}
    for day in days:
        of_day = [j for j in jobs if j["created_at"].astimezone(UTC).date() == day]
        succeeded = [j for j in of_day if j["status"] == "succeeded"]
        n_s = len(succeeded)
        n_f = sum(j["status"] == "failed" for j in of_day)
        durations = [
            (j["finished_at"] - j["started_at"]).total_seconds()
            for j in succeeded if j["started_at"] and j["finished_at"]
        ]
        latencies = [(j["finished_at"] - j["created_at"]).total_seconds() for j in succeeded if j["finished_at"]]
        out[day] = {
            "job_date": day,
            "total_jobs": len(of_day),
            "succeeded_jobs": n_s,
            "failed_jobs": n_f,
            "rejected_jobs": sum(j["status"] == "rejected" for j in of_day),
            "canceled_jobs": sum(j["status"] == "canceled" for j in of_day),
            "success_rate": n_s / (n_s + n_f) if n_s + n_f else None,
            "active_users": len({j["user_id"] for j in of_day}),
            "avg_duration_s": statistics.fmean(durations) if durations else None,
            "median_duration_s": percentile_cont(durations, 0.5),
            "p95_duration_s": percentile_cont(durations, 0.95),
            "avg_latency_s": statistics.fmean(latencies) if latencies else None,
            "credits_consumed": sum((j["credits"] for j in of_day if j["credits"] is not None), Decimal("0")),
            "gpu_seconds": float(sum(j["gpu_seconds"] for j in of_day if j["gpu_seconds"] is not None)),
        }
    return out


def expected_by_model(jobs: Sequence[dict[str, Any]], days: DayRange) -> dict[tuple[date, str], dict[str, Any]]:
    out = {}
    keys = sorted({(j["created_at"].astimezone(UTC).date(), j["model"]) for j in jobs})
    for day, model in keys:
        if day not in days:
            continue
        of_key = [j for j in jobs if j["created_at"].astimezone(UTC).date() == day and j["model"] == model]
        n_s = sum(j["status"] == "succeeded" for j in of_key)
        n_f = sum(j["status"] == "failed" for j in of_key)
        durations = [
            (j["finished_at"] - j["started_at"]).total_seconds()
            for j in of_key if j["status"] == "succeeded" and j["started_at"] and j["finished_at"]
        ]
        out[(day, model)] = {
            "job_date": day,
            "model": model,
            "jobs": len(of_key),
            "succeeded_jobs": n_s,
            "failed_jobs": n_f,
            "success_rate": n_s / (n_s + n_f) if n_s + n_f else None,
            "median_duration_s": percentile_cont(durations, 0.5),
            "p95_duration_s": percentile_cont(durations, 0.95),
            "gpu_seconds": float(sum(j["gpu_seconds"] for j in of_key if j["gpu_seconds"] is not None)),
            "credits_consumed": sum((j["credits"] for j in of_key if j["credits"] is not None), Decimal("0")),
        }
    return out


def assert_same_kpis(actual: dict[str, Any], expected: dict[str, Any], *, where: str) -> None:
    """Counts and decimals exactly; floats to 1e-9 relative (sums in another order differ in the last bits)."""
    for column, want in expected.items():
        got = actual[column]
        if want is None or got is None:
            assert got is None and want is None, f"{where} {column}: got {got!r}, want {want!r}"
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9), f"{where} {column}: got {got!r}, want {want!r}"
        else:
            assert got == want, f"{where} {column}: got {got!r}, want {want!r}"
            assert type(got) is type(want) or isinstance(got, int | Decimal), f"{where} {column}: {type(got)}"


@pytest.fixture
def kpi_rows(engine: sa.Engine) -> Iterator[Any]:
    """Read a KPI table's rows back, keyed by job_date (daily) or (job_date, model)."""
    from videogen.kpi.quality import read_kpi_rows

    def read(table_name: str, days: DayRange) -> dict[Any, dict[str, Any]]:
        rows = read_kpi_rows(engine, table_name, days)
        if table_name == "kpi_spark_daily":
            return {row["job_date"]: row for row in rows}
        return {(row["job_date"], row["model"]): row for row in rows}

    yield read
