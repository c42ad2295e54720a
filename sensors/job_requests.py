"""`pending` rows → one partitioned `generate_video` run each.

Exactly-once without an id cursor: the source of truth is the row's status plus Dagster's run
storage, never a cursor that a crash could leave behind.

* Each tick reads the oldest ``pending`` rows (status-driven, so a row that commits late with a
  lower id is simply found on the next tick; nothing is skipped).
* Rows that already have a run carrying their run key are marked ``queued`` with that run id
  (this is the confirmation step: it also repairs a daemon that died after launching a run but
  before anything was saved). Rows without one get a RunRequest; Dagster itself refuses to launch a
  second run for a run key it has seen, so a re-requested row is never generated twice.
* Work per tick is bounded (``VIDEOGEN_SENSOR_BATCH_SIZE`` new runs), so a backlog of 10,000 rows
  drains over ticks with each tick well inside the sensor timeout.
"""


import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from pipelines.partitions import video_jobs_partitions
from pipelines.generate_video import generate_video
from resources.jobs import JobsResource
from videogen.lifecycle import JobStore, run_key

JOB_ID_TAG = "videogen/job_id"
USER_TAG = "videogen/user"
MODEL_TAG = "videogen/model"
GPU_TAG = "videogen/gpu"


def run_tags(job: dict) -> dict[str, str]:
    """Tags the run queue limits on: one GPU slot tag, one per-user tag, and the priority."""
    return {
        JOB_ID_TAG: str(job["id"]),
        USER_TAG: str(job["user_id"])[:63],
        MODEL_TAG: str(job["model"])[:63],
        GPU_TAG: "true",
        "dagster/priority": str(job["priority"]),
    }


def plan_tick(store: JobStore, instance: dg.DagsterInstance, batch_size: int,
              run_config_for: callable = lambda job: {}) -> dg.SensorResult:
    """One tick of the pending-jobs sensor, as a plain function (the tests call it directly)."""
    # Read twice the batch: rows requested on the previous tick are confirmed here, and up to
    # batch_size new rows are requested on the same tick.
    pending = store.pending_batch(2 * batch_size)
    by_key = {run_key(job["id"], job["submission"]): job for job in pending}
    existing = {}
    if by_key:
        runs = instance.get_runs(
            dg.RunsFilter(job_name=generate_video.name, tags={RUN_KEY_TAG: list(by_key)})
        )
        existing = {run.tags[RUN_KEY_TAG]: run for run in runs}
    store.mark_queued_many({job["id"]: existing[key].run_id for key, job in by_key.items() if key in existing})
    run_requests: list[dg.RunRequest] = []
    for key, job in by_key.items():
        if key in existing:
            continue
        if len(run_requests) < batch_size:
            run_requests.append(
                dg.RunRequest(
                    run_key=key,
                    partition_key=str(job["id"]),
                    tags=run_tags(job),
                    run_config=run_config_for(job),
                )
            )
    new_partitions = [request.partition_key for request in run_requests]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[video_jobs_partitions.build_add_request(new_partitions)]
        if new_partitions
        else [],
    )


@dg.sensor(
    job=generate_video,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches one generate_video run (partition = job id) per pending row of `jobs`.",
)
def pending_jobs_sensor(context: dg.SensorEvaluationContext, jobs: JobsResource) -> dg.SensorResult:
    from videogen.config import load_settings

    result = plan_tick(jobs.store(), context.instance, load_settings().sensor_batch_size)
    if result.run_requests:
        context.log.info(f"requesting {len(result.run_requests)} run(s)")
    return result
