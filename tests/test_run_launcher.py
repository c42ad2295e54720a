"""The fork-server run launcher (launcher/) with real processes: a real code server (Dagster's managed
gRPC server), PostgreSQL run storage, run workers forked from the fork server.

Runs are created and launched through the instance as the run queue does it; the op of ``held`` waits
for the test's go-ahead, so a run is mid-flight for as long as a test needs it to be.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import create_database
from tests.waiting import wait_until

dg = pytest.importorskip("dagster")
from dagster._core.launcher import WorkerStatus  # noqa: E402
from dagster._core.workspace.context import WorkspaceProcessContext  # noqa: E402
from dagster._core.workspace.load_target import ModuleTarget  # noqa: E402
from dagster._daemon.monitoring.run_monitoring import monitor_started_run  # noqa: E402

import tests.launcher_jobs as jobs  # noqa: E402
from launcher.run_launcher import (  # noqa: E402
    WORKER_TAG,
    ForkServerRunLauncher,
    _worker,
    code_fingerprint,
)

REPO = Path(__file__).resolve().parents[1]
LOCATION = "launcher_test"


@pytest.fixture
def dagster(admin_url, tmp_path):
    with dagster_instance(admin_url, tmp_path) as d:
        yield d


@contextlib.contextmanager
def dagster_instance(admin_url, tmp_path, launcher_config: str = ""):
    """An instance on its own Dagster database with ForkServerRunLauncher (``launcher_config``: the
    YAML of its ``config:``), and a workspace whose code server is a real process (as under the daemon)."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_url: " + create_database(admin_url, migrate=False) + "\n"
        "run_launcher:\n  module: launcher.run_launcher\n  class: ForkServerRunLauncher\n"
        + (f"  config:\n{launcher_config}" if launcher_config else "") + "telemetry:\n  enabled: false\n")
    instance = dg.DagsterInstance.from_config(str(home))
    assert isinstance(instance.run_launcher, ForkServerRunLauncher)
    target = ModuleTarget(module_name="tests.launcher_jobs", attribute="defs", working_directory=str(REPO),
                          location_name=LOCATION)
    with WorkspaceProcessContext(instance, target) as context:
        workers: list[int] = []
        yield {"instance": instance, "context": context, "home": home, "tmp": tmp_path, "workers": workers}
        for pid in workers:  # nothing of ours outlives the test, whatever it asserted
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
    instance.dispose()


def launch(d, job: dg.JobDefinition, run_config: dict) -> str:
    workspace = d["context"].create_request_context()
    remote = workspace.get_code_location(LOCATION).get_repository("__repository__").get_full_job(job.name)
    run = d["instance"].create_run_for_job(job_def=job, run_config=run_config,
                                           remote_job_origin=remote.get_remote_origin(),
                                           job_code_origin=remote.get_python_origin())
    d["instance"].launch_run(run.run_id, workspace)
    worker = _worker(d["instance"].get_run_by_id(run.run_id))
    assert worker is not None, "the launcher records the run worker it forked"
    d["workers"].append(worker["pid"])
    return run.run_id


def status(d, run_id: str) -> dg.DagsterRunStatus:
    return d["instance"].get_run_by_id(run_id).status


def held_config(tmp: Path, name: str) -> dict:
    return {"ops": {"hold": {"config": {"started": str(tmp / f"{name}.started"),
                                         "release": str(tmp / f"{name}.release")}}}}


def wait_started(d, run_id: str, name: str) -> int:
    started = d["tmp"] / f"{name}.started"
    wait_until(lambda: started.exists() and started.read_text(), 120, f"run {name}'s op to start")
    wait_until(lambda: status(d, run_id) == dg.DagsterRunStatus.STARTED, 60, f"run {name} to be STARTED")
    return int(started.read_text())


def run_quick(d, name: str, modules: tuple[str, ...] = ()) -> tuple[int, int]:
    """Launch the quick job; (its run worker's pid, that worker's parent's pid) once it succeeded.
    Of ``modules``, those the worker had imported when its op started go to ``<tmp>/<name>.modules``."""
    out = d["tmp"] / f"{name}.pids"
    run_id = launch(d, jobs.quick, {"ops": {"say_pids": {"config": {
        "out": str(out), "modules": list(modules), "modules_out": str(d["tmp"] / f"{name}.modules")}}}})
    wait_until(lambda: status(d, run_id).name in ("SUCCESS", "FAILURE", "CANCELED"), 120, f"run {name} to end")
    assert status(d, run_id) == dg.DagsterRunStatus.SUCCESS
    worker, parent = map(int, out.read_text().split())
    assert _worker(d["instance"].get_run_by_id(run_id))["pid"] == worker  # the op ran in the forked process
    started = [e.message for e in d["instance"].all_logs(run_id) if "Started process for run" in e.message]
    assert started == [f"Started process for run (pid: {worker})."]  # Dagster's own run worker body
    return worker, parent


def test_runs_are_forked_from_one_warm_fork_server_per_version_of_the_code(dagster):
    d = dagster
    (first, server), (second, server_again) = run_quick(d, "first"), run_quick(d, "second")
    assert first != second and server == server_again
    assert "launcher.fork_server" in " ".join(psutil.Process(server).cmdline())

    # The daemon reloads its code locations every minute (a new code server each time): with the
    # same files, later runs keep forking from the same warm server.
    d["context"].reload_code_location(LOCATION)
    assert run_quick(d, "reloaded")[1] == server

    # A changed source file (its modification time is enough) and a reload: a fresh fork server
    # (the new code), and the old one is stopped.
    source = Path(jobs.__file__)
    before = source.stat()
    try:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        d["context"].reload_code_location(LOCATION)
        assert run_quick(d, "changed")[1] != server
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    wait_until(lambda: not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE,
               30, "the old fork server to exit")


def test_the_fork_server_preloads_the_modules_the_launcher_names(admin_url, tmp_path, caplog):
    """``preload_modules``: imported once by the fork server, so a forked run worker starts with them;
    one that does not import is named in a warning and left to the runs."""
    probe = ("tabnanny", "wave")  # nothing here imports them
    with dagster_instance(admin_url, tmp_path / "plain") as d:
        run_quick(d, "plain", probe)
        assert (d["tmp"] / "plain.modules").read_text() == ""
    config = "    preload_modules: [tabnanny, wave, no_such_module_for_this_test]\n"
    with caplog.at_level(logging.WARNING, logger="launcher.run_launcher"), \
            dagster_instance(admin_url, tmp_path / "preloaded", config) as d:
        _, server = run_quick(d, "preloaded", probe)
        assert (d["tmp"] / "preloaded.modules").read_text() == "tabnanny wave"
        assert "launcher.fork_server" in " ".join(psutil.Process(server).cmdline())
    warnings = [r.getMessage() for r in caplog.records if "could not preload" in r.getMessage()]
    assert len(warnings) == 1 and "no_such_module_for_this_test" in warnings[0] and "ModuleNotFoundError" in warnings[0]
    assert "tabnanny" not in warnings[0]


def test_a_preload_that_starts_a_thread_is_named_and_the_run_starts_through_the_code_server(admin_url, tmp_path):
    with dagster_instance(admin_url, tmp_path, "    preload_modules: [tests.starts_a_thread]\n") as d:
        workspace = d["context"].create_request_context()
        remote = workspace.get_code_location(LOCATION).get_repository("__repository__").get_full_job("quick")
        run = d["instance"].create_run_for_job(
            job_def=jobs.quick, run_config={"ops": {"say_pids": {"config": {"out": str(tmp_path / "pids")}}}},
            remote_job_origin=remote.get_remote_origin(), job_code_origin=remote.get_python_origin())
        d["instance"].launch_run(run.run_id, workspace)
        wait_until(lambda: status(d, run.run_id).name in ("SUCCESS", "FAILURE", "CANCELED"), 120, "the run to end")
        assert status(d, run.run_id) == dg.DagsterRunStatus.SUCCESS
        assert _worker(d["instance"].get_run_by_id(run.run_id)) is None  # not a forked worker
        fallback = [e.message for e in d["instance"].all_logs(run.run_id)
                    if "fork server could not start this run" in (e.message or "")]
        assert len(fallback) == 1
        assert "preloading tests.starts_a_thread started threads ['started-on-import']" in fallback[0]


def test_the_code_fingerprint_follows_python_files_and_nothing_else(tmp_path):
    package = tmp_path / "project" / "pkg"
    package.mkdir(parents=True)
    module = package / "ops.py"
    module.write_text("X = 1\n")
    (tmp_path / "project" / "notes.txt").write_text("not code")
    python = os.path.realpath(sys.executable)

    def fingerprint() -> str | None:
        return code_fingerprint(str(tmp_path / "project"), python)

    original = fingerprint()
    assert original is not None and fingerprint() == original
    (tmp_path / "project" / "notes.txt").write_text("still not code")
    for ignored in ("__pycache__", ".hidden", "dagster_home"):
        (tmp_path / "project" / ignored).mkdir()
        (tmp_path / "project" / ignored / "x.py").write_text("")
    assert fingerprint() == original

    module.write_text("X = 22\n")  # rewritten: another size (a coarse clock may keep the mtime)
    rewritten = fingerprint()
    assert rewritten != original
    (package / "new.py").write_text("")
    added = fingerprint()
    assert added not in (original, rewritten)
    (package / "new.py").unlink()
    assert fingerprint() == rewritten

    for i in range(5):
        (tmp_path / "project" / f"data-{i}.bin").write_bytes(b"")
    assert code_fingerprint(str(tmp_path / "project"), python, max_files=5) is None  # too big: not used


def test_terminate_from_another_process_cancels_the_run(dagster):
    d = dagster
    run_id = launch(d, jobs.held, held_config(d["tmp"], "held"))
    worker = wait_started(d, run_id, "held")
    # A launcher that did not launch the run (as in the code server, where the reconciliation sensor
    # terminates runs of canceled jobs, or in the webserver): it only has the run's tags to go by.
    other = dg.DagsterInstance.from_config(str(d["home"]))
    try:
        assert other.run_launcher.terminate(run_id) is True
    finally:
        other.dispose()
    wait_until(lambda: status(d, run_id) == dg.DagsterRunStatus.CANCELED, 60, "the run to be canceled")
    wait_until(lambda: not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE,
               30, "the run worker to exit")
    assert d["instance"].run_launcher.terminate(run_id) is False  # a finished run: nothing to do


def test_a_killed_worker_is_detected_and_its_run_failed(dagster):
    d = dagster
    launcher = d["instance"].run_launcher
    run_id = launch(d, jobs.held, held_config(d["tmp"], "doomed"))
    worker = wait_started(d, run_id, "doomed")
    health = launcher.check_run_worker_health(d["instance"].get_run_by_id(run_id))
    assert health.status == WorkerStatus.RUNNING and health.run_worker_id == str(worker)

    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: launcher.check_run_worker_health(d["instance"].get_run_by_id(run_id)).status
               == WorkerStatus.FAILED, 30, "the health check to see the worker gone")
    # What the monitoring daemon does with that, each poll_interval_seconds: the run is failed.
    record = d["instance"].get_run_record_by_id(run_id)
    monitor_started_run(d["instance"], d["context"].create_request_context(), record, logging.getLogger("test"))
    assert status(d, run_id) == dg.DagsterRunStatus.FAILURE
    failure = [e.message for e in d["instance"].all_logs(run_id) if e.dagster_event and e.dagster_event.is_run_failure]
    assert failure and f"run worker (pid {worker}) is gone" in failure[-1]


def test_a_reused_pid_is_not_mistaken_for_the_worker(dagster):
    d = dagster
    run_id = launch(d, jobs.quick, {"ops": {"say_pids": {"config": {"out": str(d["tmp"] / "q.pids")}}}})
    run = d["instance"].get_run_by_id(run_id)
    # Our own (live) pid with another start time: what a reused pid looks like.
    forged = run.with_tags({**run.tags, WORKER_TAG: f'{{"host": "{socket.gethostname()}", "pid": {os.getpid()}, '
                                                    f'"create_time": 1.0}}'})
    assert d["instance"].run_launcher.check_run_worker_health(forged).status == WorkerStatus.FAILED
    wait_until(lambda: status(d, run_id) == dg.DagsterRunStatus.SUCCESS, 120, "the quick run to end")
