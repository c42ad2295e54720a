"""The code location: it loads, stays light, and its shape matches the reviewed snapshot.

Update the snapshot after an intended change with ``UPDATE_SNAPSHOTS=1 pytest tests/test_definitions.py``.
A missing snapshot is written and the test fails until it has been reviewed and committed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
HEAVY = ("torch", "diffusers", "transformers", "pyspark", "great_expectations", "boto3", "cv2", "ray")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db", **env}, timeout=300)


def describe_definitions() -> dict:
    from definitions import defs

    repo = defs.get_repository_def()
    jobs = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "description": job.description,
            "ops": sorted(node.name for node in job.graph.nodes),
            "partitioned": job.partitions_def is not None,
            "tags": dict(sorted(job.tags.items())),
        }
    return {
        "jobs": jobs,
        "sensors": {s.name: {"jobs": sorted(t.job_name for t in s.targets), "interval_s": s.minimum_interval_seconds,
                             "default_status": s.default_status.value}
                    for s in sorted(repo.sensor_defs, key=lambda s: s.name)},
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name}
                      for s in sorted(repo.schedule_defs, key=lambda s: s.name)},
        "assets": {key.to_user_string(): {
                       "group": spec.group_name, "kinds": sorted(spec.kinds), "owners": list(spec.owners),
                       "has_description": bool(spec.description)}
                   for key, spec in sorted(((s.key, s) for s in _asset_specs(defs)), key=lambda kv: kv[0].to_user_string())},
        "asset_checks": sorted(key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys),
        "resources": sorted(repo.get_top_level_resources()),
    }


def _asset_specs(defs):
    from dagster import AssetsDefinition

    for assets_def in defs.assets or []:
        if isinstance(assets_def, AssetsDefinition):
            yield from assets_def.specs


def check_snapshot(described: dict, snapshot: Path, *, update: bool) -> None:
    """``described`` must equal the committed ``snapshot``. A missing snapshot is written and the test
    fails: a snapshot nobody reviewed proves nothing (CI would otherwise pass on a fresh checkout)."""
    text = json.dumps(described, indent=2, sort_keys=True) + "\n"
    if update:
        snapshot.write_text(text)
        return
    if not snapshot.exists():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text)
        pytest.fail(f"{snapshot.relative_to(REPO) if snapshot.is_relative_to(REPO) else snapshot} was missing: "
                    "it has been written from the current definitions; review it and commit it", pytrace=False)
    assert described == json.loads(snapshot.read_text()), (
        "the definitions differ from the snapshot: if the change is intended, rerun with UPDATE_SNAPSHOTS=1, "
        "review the diff and commit it")


def test_definitions_match_the_snapshot():
    check_snapshot(describe_definitions(), SNAPSHOT, update=os.environ.get("UPDATE_SNAPSHOTS") == "1")


def test_a_missing_snapshot_is_written_and_fails(tmp_path):
    described = {"jobs": {"generate_video": {"ops": ["a", "b"]}}}
    missing = tmp_path / "snapshots" / "definitions.json"
    with pytest.raises(pytest.fail.Exception, match="was missing: it has been written .* review it and commit it"):
        check_snapshot(described, missing, update=False)
    assert json.loads(missing.read_text()) == described
    check_snapshot(described, missing, update=False)  # now it exists and matches
    with pytest.raises(AssertionError, match="UPDATE_SNAPSHOTS=1"):
        check_snapshot({"jobs": {}}, missing, update=False)
    check_snapshot({"jobs": {}}, missing, update=True)  # UPDATE_SNAPSHOTS=1 rewrites it and passes
    assert json.loads(missing.read_text()) == {"jobs": {}}


def test_every_job_and_asset_is_described():
    described = describe_definitions()
    assert all(job["description"] for job in described["jobs"].values())
    for key, asset in described["assets"].items():
        assert asset["has_description"] and asset["kinds"] and asset["owners"] and asset["group"], key


def test_loading_the_code_location_imports_no_heavy_library_and_is_fast():
    result = run_python(
        "import sys, time; t = time.perf_counter(); import definitions; definitions.defs.get_repository_def();"
        f"print(round(time.perf_counter() - t, 2)); print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert result.returncode == 0, result.stderr
    seconds, heavy = result.stdout.strip().splitlines()[-2:]
    assert heavy == "[]"
    print(f"code location load: {seconds} s")  # the timed target lives in benchmarks/, not here


def test_production_runs_generate_video_in_process_and_refuses_an_incomplete_profile():
    """One run pod per request runs every op (the GPU work is in Ray Serve): in_process in both profiles."""
    from tests.deploy.test_profile import PRODUCTION_ENV

    code = "import definitions; print(definitions.defs.get_job_def('generate_video').executor_def.name)"
    local = run_python(code)
    assert local.returncode == 0, local.stderr
    assert local.stdout.split()[-1] == "in_process"
    production = run_python(code, **PRODUCTION_ENV)
    assert production.returncode == 0, production.stderr
    assert production.stdout.split()[-1] == "in_process"
    incomplete = run_python(code, **{**PRODUCTION_ENV, "VIDEOGEN_SERVE_URL": ""})
    assert incomplete.returncode != 0
    assert "refuses to start with local fallbacks" in incomplete.stderr
    assert "VIDEOGEN_SERVE_URL is not set" in incomplete.stderr


@pytest.mark.parametrize("module", ["pipelines.generate_video", "sensors", "resources.generation"])
def test_dagster_modules_import_without_heavy_libraries(module):
    result = run_python(f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_dagster_loads_the_workspace_like_the_daemon_does():
    """`dagster definitions validate` loads workspace.yaml with Dagster's own loader (it refuses, for
    instance, a second Definitions object at module scope, which importing `definitions` would not)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
