"""Checks of a job's audit trail against the lifecycle's transition table."""

from __future__ import annotations

from collections import Counter

from videogen.lifecycle.transitions import next_statuses


def assert_trail_in_lifecycle_order(events: list[dict], row: dict) -> None:
    """Every status change in ``events`` (job_events in id order) is a transition of the table, every
    run that started the job was queued exactly once before it started, and the row's timestamps agree."""
    assert events and events[0]["status"] == "pending" and events[0]["stage"] == "submit", events[:1]
    previous = events[0]["status"]
    queued_runs: Counter[str] = Counter()
    for event in events[1:]:
        status = event["status"]
        if status != previous:
            assert status in next_statuses(previous), f"{previous} → {status} is not a transition: {events}"
        if status == "queued" and event["stage"] == "queue":
            queued_runs[event["run_id"]] += 1
        if status == "running" and previous != "running":
            assert queued_runs[event["run_id"]] == 1, f"run {event['run_id']} started without one queue: {events}"
        previous = status
    assert previous == row["status"], (previous, row["status"])
    assert all(count == 1 for count in queued_runs.values()), queued_runs
    if row["started_at"] is not None:
        assert row["queued_at"] is not None and row["created_at"] <= row["queued_at"] <= row["started_at"], row
