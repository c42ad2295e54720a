"""The pending-jobs sensor and the reconciliation sensor against a real Dagster instance and PostgreSQL.

``FakeDaemon`` is the part of the Dagster daemon that acts on a sensor result: it adds the requested
partitions and creates one run per request, skipping run keys it has already launched (what the
real daemon does). It can also "crash" after launching, before anything else is saved.
"""

import json
import threading
import time
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import RUN_KEY_TAG

from pipelines.generate_video import generate_video
from sensors.job_reconciliation import recover_lost_jobs, stop_canceled_runs
from sensors.job_requests import plan_tick, plan_tick_waiting
from tests.conftest import create_database
from tests.trail import assert_trail_in_lifecycle_order
from videogen.lifecycle import JobRequest, JobStore


class FakeDaemon:
    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.launched: Counter[str] = Counter()

    def apply(self, result: dg.SensorResult, *, launch_only: int | None = None) -> list[str]:
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        run_ids = []
        requests = list(result.run_requests)[:launch_only]
        keys = [request.run_key for request in requests]
        existing = {run.tags[RUN_KEY_TAG] for run in self.instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: keys}))} if keys else set()
        for request in requests:
            if request.run_key in existing:  # the real daemon skips run keys it has already launched
                continue
            run = DagsterRun(job_name=request.job_name or generate_video.name, status=dg.DagsterRunStatus.NOT_STARTED,
                             tags={**request.tags, RUN_KEY_TAG: request.run_key,
                                   "dagster/partition": request.partition_key})
            self.instance.add_run(run)
            self.launched[request.run_key] += 1
            run_ids.append(run.run_id)
        return run_ids


@pytest.fixture
def instance(admin_url):
    """A Dagster instance on PostgreSQL storage (dagster-postgres), like production."""
    dagster_db = create_database(admin_url, migrate=False)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": dagster_db}}}) as instance:
        yield instance


@pytest.fixture
def store(engine) -> JobStore:
    return JobStore(engine)


def submit(store: JobStore, n: int, user: str = "ana") -> list[int]:
    return [store.submissions.submit(JobRequest(user_id=user, prompt=f"prompt {i}")).job_id for i in range(n)]


def test_a_run_that_starts_before_the_next_tick_is_queued_exactly_once(store, instance):
    """Deterministic replay of the lost-`queued` race: tick, launch, the run claims, then the next tick."""
    (job_id,) = submit(store, 1)
    daemon = FakeDaemon(instance)
    (run_id,) = daemon.apply(plan_tick(store, instance, batch_size=10))
    run_created = instance.get_run_record_by_id(run_id).create_timestamp
    row = store.runs.claim(job_id, run_id, run_created_at=run_created)  # before the sensor confirmed
    assert row["status"] == "running" and row["queued_at"] <= row["started_at"]
    second = plan_tick(store, instance, batch_size=10)
    assert second.run_requests == [] and len(daemon.launched) == 1
    events = store.reads.events(job_id)
    assert [(e["status"], e["stage"]) for e in events] == [("pending", "submit"), ("queued", "queue"),
                                                          ("running", "validate")]
    assert_trail_in_lifecycle_order(events, store.reads.get(job_id))

class WatchSpy:
    """Wraps JobQueue.wait_for_pending: records what each watch returned, and sets ``watching`` when
    a tick starts watching (after its first plan found nothing)."""

    def __init__(self, queue) -> None:
        self.real, self.watching, self.results = queue.wait_for_pending, threading.Event(), []
        queue.wait_for_pending = self

    def __call__(self, **kwargs) -> bool:
        self.watching.set()
        self.results.append(self.real(**kwargs))
        return self.results[-1]


def test_a_tick_that_found_nothing_launches_a_row_inserted_while_it_watches(store, instance):
    spy = WatchSpy(store.queue)
    ticked: list[dg.SensorResult] = []
    tick = threading.Thread(target=lambda: ticked.append(plan_tick_waiting(
        store, instance, 10, deadline=time.monotonic() + 60, poll_s=0.05)), daemon=True)
    tick.start()
    assert spy.watching.wait(30), "the tick never started watching"
    (job_id,) = submit(store, 1)  # inserted after the tick's first plan found nothing
    tick.join(30)
    assert not tick.is_alive(), "the tick did not end when the row appeared (its deadline was 60 s away)"
    assert spy.results == [True] and [int(r.partition_key) for r in ticked[0].run_requests] == [job_id]
    assert [request.partition_keys for request in ticked[0].dynamic_partitions_requests] == [[str(job_id)]]


def test_a_watching_tick_ends_at_its_deadline_and_is_not_woken_by_a_row_not_yet_due(store, instance, engine):
    (job_id,) = submit(store, 1)
    with engine.begin() as conn:  # a retry waiting out its backoff
        conn.execute(sa.text("UPDATE jobs SET not_before = now() + interval '1 hour' WHERE id = :id"), {"id": job_id})
    spy = WatchSpy(store.queue)
    result = plan_tick_waiting(store, instance, 10, deadline=time.monotonic() + 0.3, poll_s=0.05)
    assert result.run_requests == [] and spy.results == [False]
    # A tick with rows to launch does not watch at all.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET not_before = NULL WHERE id = :id"), {"id": job_id})
    result = plan_tick_waiting(store, instance, 10, deadline=time.monotonic() + 60, poll_s=0.05)
    assert [int(r.partition_key) for r in result.run_requests] == [job_id] and spy.results == [False]


def test_each_pending_row_gets_one_run_then_queued(store, instance):
    ids = submit(store, 3)
    daemon = FakeDaemon(instance)
    first = plan_tick(store, instance, batch_size=10)
    assert sorted(int(r.partition_key) for r in first.run_requests) == ids
    request = first.run_requests[0]
    assert request.run_key == str(request.partition_key)
    assert request.tags["videogen/user"] == "ana" and request.tags["dagster/priority"] == "0"
    daemon.apply(first)
    assert set(instance.get_dynamic_partitions("video_jobs")) == {str(i) for i in ids}
    second = plan_tick(store, instance, batch_size=10)
    assert second.run_requests == []
    for job_id in ids:
        row = store.reads.get(job_id)
        assert row["status"] == "queued" and row["run_id"] is not None and row["queued_at"] is not None
    assert all(n == 1 for n in daemon.launched.values())


def test_rows_committed_out_of_id_order_are_not_skipped(store, instance, engine):
    daemon = FakeDaemon(instance)
    # Transaction A takes an id first but commits after B, and after a tick has run.
    hold = threading.Event()
    done = threading.Event()
    late_id: list[int] = []

    def slow_insert():
        with engine.begin() as conn:
            late_id.append(conn.execute(sa.text(
                "INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'late') RETURNING id")).scalar())
            hold.wait(timeout=30)
        done.set()

    thread = threading.Thread(target=slow_insert)
    thread.start()
    while not late_id:
        threading.Event().wait(0.01)
    early = submit(store, 1)[0]
    assert early > late_id[0]
    daemon.apply(plan_tick(store, instance, batch_size=10))
    assert set(daemon.launched) == {str(early)}
    hold.set()
    assert done.wait(timeout=30)
    thread.join()
    daemon.apply(plan_tick(store, instance, batch_size=10))
    assert set(daemon.launched) == {str(early), str(late_id[0])}
    assert all(n == 1 for n in daemon.launched.values())


@pytest.mark.parametrize("launched_before_crash", [0, 2, 5])
def test_daemon_restart_between_launch_and_save(store, instance, launched_before_crash):
    """The daemon launches some (or all, or none) runs of a tick, then dies before anything is saved."""
    ids = submit(store, 5)
    daemon = FakeDaemon(instance)
    daemon.apply(plan_tick(store, instance, batch_size=10), launch_only=launched_before_crash)
    # After the restart, a fresh evaluation: launched rows are confirmed, the others requested again.
    for _ in range(3):
        daemon.apply(plan_tick(store, instance, batch_size=10))
    assert sorted(int(k) for k in daemon.launched) == ids
    assert all(n == 1 for n in daemon.launched.values())
    assert {store.reads.status_of(i) for i in ids} == {"queued"}


def test_ten_thousand_pending_rows_drain_over_bounded_ticks(store, instance, engine):
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO jobs (user_id, prompt) SELECT 'user' || (g % 7), 'prompt ' || g FROM generate_series(1, 10000) g"))
    daemon = FakeDaemon(instance)
    batch = 500
    ticks = 0
    while True:
        result = plan_tick(store, instance, batch_size=batch)
        assert len(result.run_requests) <= batch
        daemon.apply(result)
        ticks += 1
        with engine.connect() as conn:
            pending = conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'pending'")).scalar()
        if pending == 0:
            break
        assert ticks < 100
    assert len(daemon.launched) == 10000 and set(daemon.launched.values()) == {1}
    assert ticks == 10000 // batch + 1  # one extra tick confirms the last batch


def test_canceled_jobs_are_not_launched_and_active_runs_are_stopped(store, instance):
    pending_id, queued_id = submit(store, 2)
    daemon = FakeDaemon(instance)
    store.operator.cancel(pending_id)
    result = plan_tick(store, instance, batch_size=10)
    assert [int(r.partition_key) for r in result.run_requests] == [queued_id]
    (run_id,) = daemon.apply(result)
    plan_tick(store, instance, batch_size=10)
    assert store.reads.status_of(queued_id) == "queued"
    store.operator.cancel(queued_id)
    assert stop_canceled_runs(store, instance) == 1
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    assert store.reads.get(queued_id)["stage"] == "canceled"
    assert store.reads.get(pending_id)["stage"] == "canceled"  # nothing to stop, acknowledged
    assert stop_canceled_runs(store, instance) == 0


def test_a_job_whose_run_died_is_resubmitted_then_failed(store, instance, engine):
    (job_id,) = submit(store, 1)
    daemon = FakeDaemon(instance)
    delays = (0.0, 0.0)
    for attempt in range(1, 4):
        daemon.apply(plan_tick(store, instance, batch_size=10))
        plan_tick(store, instance, batch_size=10)
        run = instance.get_run_by_id(store.reads.get(job_id)["run_id"])
        assert store.runs.claim(job_id, run.run_id)["attempts"] == attempt
        instance.report_run_failed(run)  # the worker died: the run ended, the job still says running
        actions = recover_lost_jobs(store, instance, retry_delays_s=delays, heartbeat_timeout_s=60)
        expected = "resubmitted" if attempt <= len(delays) else "failed"
        assert actions == [(job_id, expected)]
    row = store.reads.get(job_id)
    assert row["status"] == "failed" and row["error_code"] == "worker_lost"
    assert "without reporting" in row["error_message"]
    assert len(daemon.launched) == 3  # "<id>", "<id>-r1", "<id>-r2"


def test_a_stale_heartbeat_marks_the_run_failed(store, instance, engine):
    (job_id,) = submit(store, 1)
    daemon = FakeDaemon(instance)
    daemon.apply(plan_tick(store, instance, batch_size=10))
    plan_tick(store, instance, batch_size=10)
    run_id = store.reads.get(job_id)["run_id"]
    store.runs.claim(job_id, run_id)
    run = instance.get_run_by_id(run_id)
    assert recover_lost_jobs(store, instance, retry_delays_s=(), heartbeat_timeout_s=60) == []
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = :id"),
                     {"id": job_id})
    assert recover_lost_jobs(store, instance, retry_delays_s=(), heartbeat_timeout_s=60) == [(job_id, "failed")]
    assert "stopped sending heartbeats" in store.reads.get(job_id)["error_message"]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_runs_carry_no_run_config_and_no_gpu_tag(store, instance):
    """Every run is the same light pod whichever the model (generation happens in Ray Serve): nothing
    per model travels with a run, and GPU capacity is the generation op's pool, not a run tag."""
    (job_id,) = submit(store, 1)
    (request,) = plan_tick(store, instance, batch_size=10).run_requests
    assert request.run_config == {}
    assert request.tags == {"videogen/user": "ana", "videogen/model": "tiny", "videogen/job_id": str(job_id),
                            "dagster/priority": "0"}
    assert "nvidia.com/gpu" not in json.dumps(request.tags)


def test_the_generation_pool_limit_is_written_explicitly_and_follows_the_configured_default(admin_url):
    """Dagster's lazy default-limit path crashes runs on PostgreSQL once the pool row exists
    (dagster-io/dagster#33552): the sensor writes the configured default as an explicit limit first,
    follows the default when it changes, and keeps a limit an operator set."""
    from sensors.job_requests import pin_pool_limit

    dagster_db = create_database(admin_url, migrate=False)
    pool = "videogen_generation"

    def limits(instance):
        return {p.name: (p.limit, p.from_default) for p in instance.event_log_storage.get_pool_limits()}

    storage = {"storage": {"postgres": {"postgres_url": dagster_db}}}
    with dg.instance_for_test(overrides={**storage, "concurrency": {"pools": {"default_limit": 2}}}) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
        assert limits(instance) == {pool: (2, True)}  # what a first slot claim leaves
        assert pin_pool_limit(instance, pool, None) == 2
        assert limits(instance) == {pool: (2, False)}
        assert pin_pool_limit(instance, pool, 2) == 2  # nothing to write on the next ticks
    with dg.instance_for_test(overrides={**storage, "concurrency": {"pools": {"default_limit": 3}}}) as instance:
        assert pin_pool_limit(instance, pool, 2) == 3  # dagster.yaml changed: the limit follows
        assert limits(instance) == {pool: (3, False)}
        instance.event_log_storage.set_concurrency_slots(pool, 8)  # an operator's choice
        assert pin_pool_limit(instance, pool, 3) is None
        assert limits(instance) == {pool: (8, False)}
        assert pin_pool_limit(instance, pool, None) is None  # and it stays


def test_a_storyboard_row_gets_a_generate_film_run_and_a_clip_a_generate_video_run(store, instance):
    clip = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    film = store.submissions.submit(JobRequest(user_id="bob", prompt="a day", storyboard={
        "scenes": [{"prompt": "a fox", "duration_s": 1}]})).job_id
    daemon = FakeDaemon(instance)
    result = plan_tick(store, instance, batch_size=10)
    assert {int(r.partition_key): r.job_name for r in result.run_requests} == {clip: "generate_video",
                                                                              film: "generate_film"}
    daemon.apply(result)
    plan_tick(store, instance, batch_size=10)  # confirms both, whichever job each run is of
    assert store.reads.get(clip)["status"] == store.reads.get(film)["status"] == "queued"
