"""ForkServerRunLauncher: the local instance's run launcher (dagster_home/dagster.yaml).

Dagster's DefaultRunLauncher asks the code server to start each run, and the code server spawns a
fresh interpreter per run (multiprocessing "spawn"): every run imports dagster and the code location
again: about 2.4 s of start and 1.2 CPU-s of a ~5 CPU-s tiny request on a 2-core machine. This launcher forks run workers from a warm fork server
(launcher.fork_server) instead; the child runs Dagster's own ``execute_run`` command body.

What it keeps from Dagster's contract:
* status and events: the child writes them to run storage itself, as any run worker does;
* termination (``videogen cancel`` through the reconciliation sensor, the UI's Terminate, run
  monitoring): report_run_canceling, then SIGTERM to the worker, which Dagster's run worker turns
  into an interrupt that marks the run canceled (what K8s does when it deletes a run pod). It works
  from any process on this machine (the sensor terminates from the code server) because the
  worker's pid and start time are in a run tag;
* run monitoring's health check: a worker that is gone while its run is STARTED (killed, OOM) is
  reported FAILED, so the monitoring daemon fails the run within poll_interval_seconds (the job
  reconciliation sensor then resubmits the job). The pid alone could be reused: the start time
  must match too.

One fork server per code location and version of its code: a run never executes code older than
the files on disk. The version is a fingerprint of the location's Python files (path, size and
modification time of every ``*.py`` under its working directory) and of the interpreter and its
site-packages, not the code server's id: the daemon replaces its code servers every 60 s
(RELOAD_WORKSPACE_INTERVAL in dagster/_daemon/controller.py) whether or not anything changed, and a
fork server started each time cost a code location import (CPU-seconds on a small machine) and
held the next run back until it was warm. A working directory too big to fingerprint quickly falls
back to the code server's id. If a fork server cannot be started, the run is launched the default
way (through the code server) and the run's event log says why.

For one machine only (pids are local): production on Kubernetes keeps K8sRunLauncher (k8s/).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import psutil
from dagster import _check as check
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClassData, serialize_value
from typing_extensions import Self

from launcher.fork_server import ForkServer, ForkServerError

WORKER_TAG = "videogen/run_worker"  # {"host", "pid", "create_time"} of the forked run worker
log = logging.getLogger(__name__)


class ForkServerRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None,
                 ready_timeout_seconds: float = 120.0, preload_modules: Sequence[str] = ()) -> None:
        super().__init__(inst_data=inst_data)
        self._ready_timeout_s = ready_timeout_seconds
        self._preload_modules = tuple(preload_modules)
        # origin → (version of the code: its fingerprint, or the code server's id; fork server)
        self._servers: dict[str, tuple[Any, ForkServer]] = {}
        self._unfingerprinted: set[str] = set()  # origins already warned about
        self._servers_lock = threading.Lock()

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        from dagster import Field

        return {"ready_timeout_seconds": Field(float, is_required=False, default_value=120.0,
                                               description="How long a fork server may take to load the code location."),
                "preload_modules": Field([str], is_required=False, default_value=[],
                                         description="Modules the ops import when they run, imported once by the "
                                                     "fork server so that no run worker imports them.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # ── launching ────────────────────────────────────────────────────────────────────────────────
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        job_origin = check.not_none(run.job_code_origin, "a run without a code origin cannot be forked")
        args = ExecuteRunArgs(job_origin=job_origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
        try:
            server = self._server_for(context, run)
            pid = server.start_run(serialize_value(args))
        except ForkServerError as error:
            log.warning("fork server unavailable, launching run %s through the code server: %s", run.run_id, error)
            self._instance.report_engine_event(
                f"The fork server could not start this run; launching it through the code server instead: {error}",
                run, cls=self.__class__)
            super().launch_run(context)
            return
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: json.dumps(_identity(pid))})

    def _server_for(self, context: LaunchRunContext, run: DagsterRun) -> ForkServer:
        origin = check.not_none(run.job_code_origin).repository_origin
        key = serialize_value(origin)
        working_directory = getattr(origin.code_pointer, "working_directory", None)
        with self._servers_lock:  # one version per launch burst: threads launching at once agree on it
            fingerprint = code_fingerprint(working_directory, origin.executable_path) if working_directory else None
            if fingerprint is None and working_directory and key not in self._unfingerprinted:
                self._unfingerprinted.add(key)
                log.warning("%s holds more than %d files: its fork server follows the code server's id instead "
                            "of the code's fingerprint", working_directory, FINGERPRINT_MAX_FILES)
            version = fingerprint or ("code server", _code_server_id(context, run))
            current = self._servers.get(key)
            if current is not None and current[0] == version and current[1].alive():
                return current[1]
            if current is not None:  # the location was reloaded, or the server died: replace it
                del self._servers[key]
                current[1].close()
            pointer = origin.code_pointer
            server = ForkServer(origin.executable_path, key, cwd=getattr(pointer, "working_directory", None),
                                ready_timeout_s=self._ready_timeout_s, preload_modules=self._preload_modules)
            if server.ready.get("not_preloaded"):
                log.warning("the fork server could not preload %s: runs import them themselves",
                            server.ready["not_preloaded"])
            self._servers[key] = (version, server)
            return server

    def dispose(self) -> None:
        with self._servers_lock:
            servers, self._servers = list(self._servers.values()), {}
        for _, server in servers:
            server.close()
        super().dispose()

    # ── termination and health ───────────────────────────────────────────────────────────────────
    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or run.is_finished:
            return False
        worker = _worker(run)
        if worker is None:  # launched through the code server (fallback) or not launched yet
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        process = _process(worker)
        if process is None:
            self._instance.report_engine_event(
                f"Run worker (pid {worker['pid']}) is not running on this machine; nothing to terminate.",
                run, cls=self.__class__)
            return False
        # Dagster's run worker maps SIGTERM to an interrupt: the op stops and the run is marked canceled.
        process.send_signal(signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = _worker(run)
        if worker is None:
            # Not forked by us (launched through the code server): nothing to check, as before.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no forked run worker recorded")
        if worker.get("host") != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on another host ({worker.get('host')})")
        if _process(worker) is None:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker (pid {worker['pid']}) is gone",
                                        run_worker_id=str(worker["pid"]))
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(worker["pid"]))


FINGERPRINT_MAX_FILES = 5000  # beyond this, a working directory is not a project's source tree
# Not the project's code: caches, run storage, Spark's local warehouse, build output.
_SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules", "dagster_home", "test-artifacts", "spark-warehouse",
                                  "metastore_db", "build", "dist"})


def code_fingerprint(working_directory: str, executable: str,
                     max_files: int = FINGERPRINT_MAX_FILES) -> str | None:
    """A digest that changes when any ``*.py`` file under ``working_directory`` (hidden folders,
    caches, run storage and build output left out) is added, removed or rewritten, or when the
    interpreter or (the daemon's own interpreter's) site-packages change; None when the folder holds
    more than ``max_files`` files (not a source tree: use another signal)."""
    digest, seen = hashlib.sha256(), 0
    # Installing a package rewrites the site-packages folder; only known for the daemon's own interpreter.
    ours = os.path.realpath(executable) == os.path.realpath(sys.executable)
    for path in (executable, sysconfig.get_paths()["purelib"]) if ours else (executable,):
        with contextlib.suppress(FileNotFoundError):
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for root, directories, files in os.walk(working_directory):
        directories[:] = sorted(d for d in directories if not d.startswith(".") and d not in _SKIPPED_DIRECTORIES)
        seen += len(files)
        if seen > max_files:
            return None
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with contextlib.suppress(FileNotFoundError):  # removed while we looked: the next launch sees it gone
                    stat = os.stat(path)
                    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _code_server_id(context: LaunchRunContext, run: DagsterRun) -> Any:
    """Which code server loaded the location: a new id after a reload means new code."""
    if context.workspace is None or run.remote_job_origin is None:
        return None
    location = context.workspace.get_code_location(run.remote_job_origin.location_name)
    return getattr(location, "server_id", None)


def _identity(pid: int) -> dict[str, Any]:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # already over (it failed at once): nothing left to check or stop
        created = None
    return {"host": socket.gethostname(), "pid": pid, "create_time": created}


def _worker(run: DagsterRun) -> dict[str, Any] | None:
    raw = run.tags.get(WORKER_TAG)
    if not raw:
        return None
    try:
        worker = json.loads(raw)
    except ValueError:
        return None
    return worker if isinstance(worker, dict) and isinstance(worker.get("pid"), int) else None


def _process(worker: dict[str, Any]) -> psutil.Process | None:
    """The live run worker this tag names, or None (gone, a zombie, or its pid reused since)."""
    if worker.get("host") != socket.gethostname() or worker.get("create_time") is None:
        return None
    try:
        process = psutil.Process(worker["pid"])
        if abs(process.create_time() - worker["create_time"]) > 0.01 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None
