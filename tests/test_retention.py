"""Retention: old outputs are purged and old partitions pruned; the jobs rows stay as history."""

import dagster as dg
import sqlalchemy as sa

from pipelines.retention import purge_expired_outputs
from resources.jobs import JobsResource
from resources.storage import StorageResource
from videogen.lifecycle import JobRequest, JobStore
from videogen.storage.job_outputs import job_prefix


def make_job(store: JobStore, storage, scratch, *, days_old: int, status: str) -> int:
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    uri = None
    if status == "succeeded":
        for name in ("video.mp4", "metadata.json"):
            path = scratch / f"{job_id}-{name}"
            path.write_bytes(b"x" * 10)
            uri = storage.put_file(job_prefix(job_id) + name, path).uri
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET created_at = now() - make_interval(days => :d), status = :s, "
                             "output_uri = :u WHERE id = :id"), {"d": days_old, "s": status, "u": uri, "id": job_id})
    return job_id


def test_purge_and_prune(database_url, tmp_path):
    store = JobStore(sa.create_engine(database_url))
    storage_resource = StorageResource(root=str(tmp_path / "bucket"))
    storage = storage_resource.client()
    old_done = make_job(store, storage, tmp_path, days_old=40, status="succeeded")
    old_failed = make_job(store, storage, tmp_path, days_old=45, status="failed")
    old_running = make_job(store, storage, tmp_path, days_old=40, status="running")
    recent_done = make_job(store, storage, tmp_path, days_old=2, status="succeeded")
    ids = [old_done, old_failed, old_running, recent_done]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("video_jobs", [str(i) for i in ids])
        result = purge_expired_outputs.execute_in_process(
            instance=instance,
            run_config={"ops": {"purge_outputs": {"config": {"retention_days": 30}},
                                "prune_partitions": {"config": {"retention_days": 30}}}},
            resources={"jobs": JobsResource(database_url=database_url), "storage": storage_resource})
        assert result.success
        assert set(instance.get_dynamic_partitions("video_jobs")) == {str(old_running), str(recent_done)}
    assert storage.list_prefix(job_prefix(old_done)) == []
    assert len(storage.list_prefix(job_prefix(recent_done))) == 2
    old = store.reads.get(old_done)
    assert old["status"] == "succeeded" and old["output_uri"] is None  # the row stays, as history
    assert store.reads.events(old_done)[-1]["message"] == "outputs purged by retention (2 object(s) deleted)"
    assert store.reads.get(recent_done)["output_uri"] is not None
    assert result.output_for_node("purge_outputs") == 1 and result.output_for_node("prune_partitions") == 2
