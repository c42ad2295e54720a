"""Job ``purge_expired_outputs`` (scheduled daily): retention of outputs and of dynamic partitions.

Dagster recommends at most ~100,000 partitions per partitions definition, and there is one per job,
so partitions of old finished jobs are pruned with their outputs.
"""


from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from pipelines.partitions import video_jobs_partitions
from resources.jobs import JobsResource
from resources.storage import StorageResource
from videogen import retention
from videogen.config import load_settings, setting_default


class RetentionConfig(dg.Config):
    retention_days: int = Field(default=setting_default("retention_days"), ge=1,
                                description="Outputs of jobs older than this many days are purged.")
    max_jobs: int = Field(default=5000, description="At most this many jobs' outputs are purged per run.")


@dg.op(description="Deletes videos/<job id>/ of finished jobs older than the retention age; rows stay.")
def purge_outputs(context: dg.OpExecutionContext, config: RetentionConfig, jobs: JobsResource,
                  storage: StorageResource) -> int:
    cutoff = datetime.now(timezone.utc) - timedelta(days=config.retention_days)
    purged = retention.purge_expired_outputs(jobs.store().engine, storage.client(), cutoff, limit=config.max_jobs)
    context.log.info(f"purged outputs of {len(purged)} job(s) created before {cutoff.isoformat()}")
    context.add_output_metadata({"jobs_purged": len(purged), "objects_deleted": sum(purged.values())})
    return len(purged)


@dg.op(description="Removes the video_jobs partitions of finished jobs older than the retention age.")
def prune_partitions(context: dg.OpExecutionContext, config: RetentionConfig, jobs: JobsResource,
                     purged: int) -> int:
    cutoff = datetime.now(timezone.utc) - timedelta(days=config.retention_days)
    keys = context.instance.get_dynamic_partitions(video_jobs_partitions.name)
    expired = retention.expired_partition_keys(jobs.store().engine, keys, cutoff)
    for key in expired:
        context.instance.delete_dynamic_partition(video_jobs_partitions.name, key)
    context.add_output_metadata({"partitions_pruned": len(expired), "partitions_left": len(keys) - len(expired)})
    return len(expired)


@dg.job(description="Retention: purge old outputs and prune old dynamic partitions (jobs rows stay).",
        tags={"team": "ml-platform"})
def purge_expired_outputs() -> None:
    prune_partitions(purge_outputs())


retention_schedule = dg.ScheduleDefinition(
    job=purge_expired_outputs,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    # The environment's VIDEOGEN_RETENTION_DAYS (RetentionConfig's default is Settings' default).
    run_config={"ops": {
        name: {"config": {"retention_days": load_settings().retention_days}}
        for name in ("purge_outputs", "prune_partitions")
    }},
    description="Every day at 03:17 UTC.",
)
