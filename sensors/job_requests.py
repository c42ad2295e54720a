"""`pending` rows → one partitioned run each: `generate_video` for a clip, `generate_film` for a storyboard.

Exactly-once without an id cursor: the source of truth is the row's status plus Dagster's run
storage, never a cursor that a crash could leave behind. (The cursor holds only the generation
pool limit this sensor last wrote; see pin_pool_limit.)

* Each tick reads the oldest ``pending`` rows (status-driven, so a row that commits late with a
  lower id is simply found on the next tick; nothing is skipped).
* Rows that already have a run carrying their run key are marked ``queued`` with that run id
  (this is the confirmation step: it also repairs a daemon that died after launching a run but
  before anything was saved). Rows without one get a RunRequest; Dagster itself refuses to launch a
  second run for a run key it has seen, so a re-requested row is never generated twice.
* Work per tick is bounded (``VIDEOGEN_SENSOR_BATCH_SIZE`` new runs), so a backlog of 10,000 rows
  drains over ticks with each tick well inside the sensor timeout.
* A tick that finds nothing to launch keeps watching for a pending row until
  ``VIDEOGEN_SENSOR_WAIT_S`` after its start (polling every ``VIDEOGEN_SENSOR_POLL_S``) and plans once
  more when one appears. Dagster's sensor daemon starts a sensor's tick at most every 5 s (a fixed
  loop, no setting lowers it), so a row inserted into an idle system used to wait 2.5 s on average
  for the next tick; a watching tick sees it within one poll. A tick that ends at its deadline leaves
  a short gap before the daemon's next tick, in which a row waits for that tick as before.
"""

import os
import time

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from pipelines.partitions import video_jobs_partitions
from pipelines.generate_film import generate_film
from pipelines.generate_video import GENERATION_POOL, generate_video
from resources.jobs import JobsResource
from videogen.deploy.k8s import run_tags_for_job
from videogen.deploy.profile import load_profile
from videogen.lifecycle import JobStore, run_key
from sensors.log import log

JOB_ID_TAG = "videogen/job_id"


def run_tags(job: dict) -> dict[str, str]:
    """Tags the run queue limits on (per user), the model, the job id and the priority. GPU capacity is
    not a run tag: the generation op waits for a slot of its concurrency pool."""
    return {**run_tags_for_job(job["user_id"], job["model"]), JOB_ID_TAG: str(job["id"]),
            "dagster/priority": str(job["priority"])}


def plan_tick(store: JobStore, instance: dg.DagsterInstance, batch_size: int) -> dg.SensorResult:
    """One tick of the pending-jobs sensor, as a plain function (the tests call it directly).

    Runs carry no run config: every run of ``generate_video`` is the same light pod whichever the model
    (generation happens in the Serve app), so nothing per model is sent with a run.
    """
    # Read twice the batch: rows requested on the previous tick are confirmed here, and up to
    # batch_size new rows are requested on the same tick.
    pending = store.queue.pending_batch(2 * batch_size)
    by_key = {run_key(job["id"], job["submission"]): job for job in pending}
    existing = {}
    if by_key:
        runs = instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: list(by_key)}))
        existing = {run.tags[RUN_KEY_TAG]: run for run in runs}
    store.queue.mark_queued({job["id"]: existing[key].run_id for key, job in by_key.items() if key in existing})
    run_requests: list[dg.RunRequest] = []
    for key, job in by_key.items():
        if key in existing:
            continue
        if len(run_requests) < batch_size:
            job_name = generate_film.name if job.get("film") else generate_video.name
            run_requests.append(dg.RunRequest(run_key=key, partition_key=str(job["id"]), tags=run_tags(job),
                                              job_name=job_name))
    new_partitions = [request.partition_key for request in run_requests]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[video_jobs_partitions.build_add_request(new_partitions)]
        if new_partitions
        else [],
    )


def plan_tick_waiting(store: JobStore, instance: dg.DagsterInstance, batch_size: int, *, deadline: float,
                      poll_s: float) -> dg.SensorResult:
    """plan_tick; when it requests no run, watch for a pending row until ``deadline`` (a
    ``time.monotonic()`` time) and, once one appears, plan again (once: a row that still gets no run,
    such as one whose run exists and is confirmed, does not make the tick spin)."""
    result = plan_tick(store, instance, batch_size)
    if result.run_requests or not store.queue.wait_for_pending(deadline=deadline, poll_s=poll_s):
        return result
    return plan_tick(store, instance, batch_size)


def pin_pool_limit(instance: dg.DagsterInstance, pool: str, last_written: int | None) -> int | None:
    """Write the instance's default pool limit (dagster.yaml ``concurrency.pools.default_limit``, the
    Helm values) as the pool's explicit limit, before any run of the tick can claim a slot. Returns
    the limit this sensor has written (kept in its cursor), or ``last_written`` when it left it.

    Why: on PostgreSQL, Dagster's lazy initialization of a default-limited pool at the first slot
    claim fails the run whenever the pool's row already exists (two runs claiming at once, or a
    default changed since) — an INSERT that raises inside the transaction it then tries to go on
    with (dagster-io/dagster#33552, open). A pool with an explicit limit never takes that path.

    The limit follows the configured default when it changes, unless an operator has set another
    one (``dagster instance concurrency set``, the UI): a limit this sensor did not write is kept.
    """
    default = instance.global_op_concurrency_default_limit
    if default is None:
        return last_written
    current = next((p for p in instance.event_log_storage.get_pool_limits() if p.name == pool), None)
    ours = current is None or current.from_default or current.limit == last_written
    if not ours or (current is not None and not current.from_default and current.limit == default):
        return last_written if ours else None
    instance.event_log_storage.set_concurrency_slots(pool, default)
    return default


@dg.sensor(
    jobs=[generate_video, generate_film],
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches one run (partition = job id) per pending row of `jobs`: generate_video for a clip, "
    "generate_film for a storyboard.",
)
def pending_jobs_sensor(context: dg.SensorEvaluationContext, jobs: JobsResource) -> dg.SensorResult:
    started = time.monotonic()
    profile = load_profile(os.environ)
    last_written = int(context.cursor) if (context.cursor or "").isdigit() else None
    written = pin_pool_limit(context.instance, GENERATION_POOL, last_written)
    if written != last_written and written is not None:
        log.info(f"pool {GENERATION_POOL}: limit {written}", extra={"sensor": "pending_jobs_sensor"})
    settings = profile.settings
    result = plan_tick_waiting(jobs.store(), context.instance, settings.sensor_batch_size,
                               deadline=started + settings.sensor_wait_s, poll_s=settings.sensor_poll_s)
    for request in result.run_requests:
        log.info("requesting a run", extra={"sensor": "pending_jobs_sensor", "job_id": int(request.partition_key),
                                            "run_key": request.run_key})
    return dg.SensorResult(run_requests=result.run_requests,
                           dynamic_partitions_requests=result.dynamic_partitions_requests,
                           cursor=str(written) if written is not None else None)
