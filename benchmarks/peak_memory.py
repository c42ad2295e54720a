"""Peak memory (max RSS, MB) of one generate_video run in this process, then of the plain script's work.

Usage: python -m benchmarks.peak_memory APP_DATABASE_URL MODEL_CACHE — prints "<run MB> <plain MB>".
Each figure is measured in a fresh process (resource.getrusage of that process only).
"""

import resource
import subprocess
import sys


def run_once(app_url: str, model_cache: str) -> None:
    import dagster as dg
    import sqlalchemy as sa

    from pipelines.generate_video import generate_video
    from resources.generation import GenerationResource
    from resources.jobs import JobsResource
    from resources.storage import StorageResource
    from videogen.lifecycle import JobRequest, JobStore

    store = JobStore(sa.create_engine(app_url))
    job_id = store.submissions.submit(JobRequest(user_id="bench", prompt="a red fox running in snow", seed=5)).job_id
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(job_id)])
        result = generate_video.execute_in_process(partition_key=str(job_id), instance=instance, resources={
            "jobs": JobsResource(database_url=app_url), "generation": GenerationResource(model_cache=model_cache),
            "storage": StorageResource(root=model_cache + "-storage")})
    assert result.success and store.reads.status_of(job_id) == "succeeded"


def main() -> None:
    app_url, model_cache = sys.argv[1:3]
    if len(sys.argv) > 3 and sys.argv[3] == "--child":
        run_once(app_url, model_cache)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    ours = subprocess.run([sys.executable, "-m", "benchmarks.peak_memory", app_url, model_cache, "--child"],
                          capture_output=True, text=True, check=True).stdout.split()[-1]
    from videogen.generation.registry import BUILTIN_MODELS

    code = ("import resource, runpy, sys; sys.argv = ['plain'] + sys.argv[1:]; "
            "runpy.run_module('benchmarks.plain_script', run_name='__main__'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    plain = subprocess.run([sys.executable, "-c", code, f"{model_cache}/{BUILTIN_MODELS['tiny'].source}",
                            model_cache + "-plain.mp4", "64", "64", "9", "8", "4", "5"],
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    print(ours, plain)


if __name__ == "__main__":
    main()
