"""Run a partitioned generation job (generate_video, generate_film) in process for one job id, with
the real resources over a test's database and folders."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def run_job_in_process(job: dg.JobDefinition, job_id: int, *, database_url: str, tmp_path: Path,
                       storage=None, quality=None, generation=None,
                       retry_delays_s: str = "0.1") -> dg.ExecuteInProcessResult:
    """``job`` for the partition ``job_id``: models under ``tmp_path/models``, the bucket under
    ``tmp_path/storage`` unless ``storage`` (a StorageResource) is given, default QA limits unless
    ``quality`` is."""
    from resources.generation import GenerationResource
    from resources.jobs import JobsResource
    from resources.quality import QualityResource
    from resources.storage import StorageResource

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(job_id)])
        return job.execute_in_process(
            partition_key=str(job_id), instance=instance, raise_on_error=False,
            resources={"jobs": JobsResource(database_url=database_url, retry_delays_s=retry_delays_s),
                       "generation": generation or GenerationResource(model_cache=str(tmp_path / "models")),
                       "quality": quality or QualityResource(),
                       "storage": storage or StorageResource(root=str(tmp_path / "storage"))})
