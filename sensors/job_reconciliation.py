"""Keep `jobs` honest about runs: stop canceled jobs' runs, and never leave a job stuck in `running`.

* A canceled job whose run is queued or running gets that run canceled/terminated (the generation
  op also notices the cancel by itself between denoising steps).
* A queued/running job whose run has finished without writing a final status, or whose worker
  stopped writing heartbeats (a killed process, when run monitoring has not failed its run yet: the
  local fork-server launcher's health check usually does so first), is resubmitted with backoff
  while it has retries left, else marked ``failed`` with the cause.
"""


import dagster as dg

from resources.jobs import JobsResource
from videogen.lifecycle import JobStore
from sensors.log import log

ACTIVE_RUN_STATUSES = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
}


def stop_canceled_runs(store: JobStore, instance: dg.DagsterInstance, limit: int = 100) -> int:
    stopped = 0
    for job in store.queue.canceled_with_live_run(limit):
        run = instance.get_run_by_id(job["run_id"]) if job["run_id"] else None
        if run is not None and run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message=f"job {job['id']} was canceled")
            store.queue.mark_cancel_propagated(job["id"], f"run {run.run_id} canceled before it started")
            stopped += 1
        elif run is not None and run.status in ACTIVE_RUN_STATUSES:
            # Terminates the run worker through the run launcher (the op also stops on its own).
            instance.run_coordinator.cancel_run(run.run_id)
            store.queue.mark_cancel_propagated(job["id"], f"run {run.run_id} canceled")
            stopped += 1
        else:
            store.queue.mark_cancel_propagated(job["id"], "no active run to stop")
    return stopped


def recover_lost_jobs(
    store: JobStore,
    instance: dg.DagsterInstance,
    *,
    retry_delays_s: tuple[float, ...],
    heartbeat_timeout_s: float,
    limit: int = 200,
) -> list[tuple[int, str]]:
    """Returns (job id, action) for every job it changed."""
    actions: list[tuple[int, str]] = []
    for job in store.queue.active_jobs(limit):
        run = instance.get_run_by_id(job["run_id"])
        reason = None
        if run is None:
            reason = f"run {job['run_id']} does not exist"
        elif run.is_finished:
            reason = f"run {run.run_id} ended ({run.status.value}) without reporting a result"
        elif (
            job["status"] == "running"
            and job["heartbeat_age"] is not None
            and job["heartbeat_age"].total_seconds() > heartbeat_timeout_s
        ):
            reason = (
                f"run {run.run_id} stopped sending heartbeats {job['heartbeat_age'].total_seconds():.0f} s ago "
                "(its worker was probably killed)"
            )
            # Tell Dagster too, so the UI does not show a zombie run as in progress.
            instance.report_run_failed(run, message=reason)
        if reason is None:
            continue
        # attempts counts runs that claimed the job; 0 means the run died before it even started.
        if job["attempts"] <= len(retry_delays_s):
            delay = retry_delays_s[max(job["attempts"], 1) - 1]
            if store.queue.resubmit_lost(job["id"], run_id=job["run_id"], delay_s=delay, reason=reason):
                actions.append((job["id"], "resubmitted"))
        elif store.runs.fail(job["id"], code="worker_lost", message=reason, run_id=job["run_id"], stage="run"):
            actions.append((job["id"], "failed"))
    return actions


@dg.sensor(
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Stops runs of canceled jobs and recovers jobs whose run died without reporting.",
)
def job_reconciliation_sensor(context: dg.SensorEvaluationContext, jobs: JobsResource) -> dg.SkipReason:
    store = jobs.store()
    stopped = stop_canceled_runs(store, context.instance)
    actions = recover_lost_jobs(
        store, context.instance, retry_delays_s=jobs.retry_delays(), heartbeat_timeout_s=jobs.heartbeat_timeout_s
    )
    summary = f"stopped {stopped} canceled run(s); recovered {len(actions)} job(s): {actions}"
    if stopped or actions:
        log.info(summary, extra={"sensor": "job_reconciliation_sensor"})
    return dg.SkipReason(summary)
