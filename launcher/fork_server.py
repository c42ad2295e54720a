"""A fork server for run workers: one process that has imported Dagster and loaded a code location,
and forks a run worker for each run.

Why: Dagster's code server starts every run worker with multiprocessing "spawn", so each run pays a
fresh interpreter that imports dagster and the code location again (~1.2 CPU-s of a ~5 CPU-s run on
a small machine). A forked child starts with all of that already in memory (copy on write).

Forking is only safe from a single-threaded process that holds no connections: the server imports
and loads the definitions (which opens nothing: resources are built inside the run), imports what runs
import on their way (Dagster's run-time modules and the launcher's ``preload_modules``, so that no
run worker imports them again), checks that no thread was started, and then only waits on its
control connection. The child executes the run
exactly like ``dagster api execute_run`` (the command Dagster's K8s and Docker launchers run): same
function, so run status, events, interrupts (SIGTERM/SIGINT → the run is marked canceled) and
failure reporting are Dagster's own.

Protocol, over a ``multiprocessing.connection.Connection`` (length-framed bytes) on a socket pair
the launcher passes as file descriptor ``argv[1]``: the server sends ``{"ready": …}`` once warm;
then each request is a serialized ``ExecuteRunArgs`` and each answer ``{"pid": N}`` or
``{"error": "…"}``. When the launcher's end closes, the server exits; running children carry on
(they are ordinary processes of the same session, reaped by whoever inherits them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

READY_TIMEOUT_S = 120.0  # importing and loading a code location on a busy 2-core machine: a few s


class ForkServerError(RuntimeError):
    pass


class ForkServer:
    """The launcher's side: starts ``python -m launcher.fork_server`` for one code location and asks
    it for run workers. Thread safe (the run queue launches from several threads)."""

    def __init__(self, executable: str, serialized_origin: str, *, cwd: str | None = None,
                 ready_timeout_s: float = READY_TIMEOUT_S, preload_modules: tuple[str, ...] = ()) -> None:
        ours, theirs = socket.socketpair()
        self._lock = threading.Lock()
        try:
            self.process = subprocess.Popen(
                [executable, "-m", "launcher.fork_server", str(theirs.fileno()), serialized_origin,
                 json.dumps(list(preload_modules))],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd=cwd,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self.ready = self._receive(ready_timeout_s, "to load the code location")
        except BaseException:
            self.close()
            raise
        if "error" in self.ready:
            self.close()
            raise ForkServerError(f"the fork server could not load the code location:\n{self.ready['error']}")

    def _receive(self, timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(0.2):
            if self.process.poll() is not None:
                raise ForkServerError(f"the fork server exited ({self.process.returncode}) before it was ready {what}")
            if time.monotonic() > deadline:
                raise ForkServerError(f"the fork server took more than {timeout_s:.0f} s {what}")
        try:
            return json.loads(self._conn.recv_bytes())
        except EOFError:
            raise ForkServerError(f"the fork server closed its connection ({what})") from None

    def alive(self) -> bool:
        return self.process.poll() is None and not self._conn.closed

    def start_run(self, serialized_execute_run_args: str) -> int:
        """Fork a run worker for these ``ExecuteRunArgs``; its pid."""
        with self._lock:
            try:
                self._conn.send_bytes(serialized_execute_run_args.encode())
            except OSError as error:
                raise ForkServerError(f"the fork server is gone: {error}") from None
            answer = self._receive(30.0, "to fork a run worker")
        if "error" in answer:
            raise ForkServerError(answer["error"])
        return int(answer["pid"])

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the connection: the server exits (its run workers do not)."""
        with self._lock:
            if not self._conn.closed:
                self._conn.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ── the server process ───────────────────────────────────────────────────────────────────────────
# What every run imports on its way (instance, storage, executor, compute logs), so no child pays for it.
RUN_MODULES = ("dagster._cli.api", "dagster._core.instance.factory", "dagster._core.storage.root",
               "dagster._core.storage.local_compute_log_manager", "dagster._core.executor.in_process",
               "dagster._core.execution.plan.active", "dagster._core.system_config.composite_descent",
               "watchdog.observers.polling", "dagster_postgres")


def _warm(serialized_origin: str, preload_modules: list[str]) -> dict[str, Any]:
    """Import Dagster and load the code location and its jobs, as a run worker would; then the modules
    every run imports on its way (RUN_MODULES) and those the launcher names (``preload_modules``: what
    the location's ops import when they run). A module that does not import is left to the runs, which
    report their own error if they need it; the server says which in its ready message."""
    import importlib

    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._serdes import deserialize_value
    from dagster._utils.hosted_user_process import recon_repository_from_origin

    origin = deserialize_value(serialized_origin, RepositoryPythonOrigin)
    repository = recon_repository_from_origin(origin).get_definition()
    for name in repository.job_names:  # built and cached on the Definitions object, shared by forks
        repository.get_job(name)
    for name in RUN_MODULES:
        with contextlib.suppress(ImportError):  # dagster_postgres: only for instances on PostgreSQL
            importlib.import_module(name)
    not_preloaded = {}
    for name in preload_modules:
        threads = set(threading.enumerate())
        try:
            importlib.import_module(name)
        except BaseException as error:  # noqa: BLE001 - any failure (SystemExit too): the runs import it
            not_preloaded[name] = f"{type(error).__name__}: {error}"
        started = [t.name for t in set(threading.enumerate()) - threads]
        if started:  # serve() would then refuse to fork at all: say which module it was
            raise RuntimeError(f"preloading {name} started threads {started}: remove it from preload_modules")
    return {"ready": True, "pid": os.getpid(), "jobs": len(repository.job_names), "not_preloaded": not_preloaded}


def _reap() -> None:
    """Collect run workers that have exited (no zombies; their status is Dagster's business)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _run_worker(conn: Connection, serialized_execute_run_args: str) -> None:
    """In the forked child: execute the run like ``dagster api execute_run``, then exit."""
    code = 1
    try:
        conn.close()
        # The server ignores SIGINT (see serve); a run worker must react to it like any process.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from dagster._cli.api import execute_run_command

        # The command's body (not click's argument parsing): capture_interrupts, the instance from the
        # args' ref, _execute_run_command_body → core_execute_run, sys.exit(1) when asked to fail.
        execute_run_command.callback(input_json=serialized_execute_run_args, compressed_input_json=None)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 - a child must never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # os._exit: the server's atexit handlers and buffered state belong to the server.
            os._exit(code)


def serve(fd: int, serialized_origin: str, preload_modules: list[str] | None = None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the daemon stops, closes the connection,
    # and the server exits on that; without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        ready = _warm(serialized_origin, preload_modules or [])
    except BaseException:  # noqa: BLE001 - reported to the launcher, which says why in the run's events
        import traceback

        conn.send_bytes(json.dumps({"error": traceback.format_exc()}).encode())
        raise
    extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if extra:  # a thread's locks would be copied mid-use into every child: refuse to fork
        conn.send_bytes(json.dumps({"error": f"threads running after loading the code location: {extra}"}).encode())
        raise SystemExit(1)
    conn.send_bytes(json.dumps(ready).encode())
    while True:
        _reap()
        if not conn.poll(1.0):
            continue
        try:
            request = conn.recv_bytes().decode()
        except EOFError:  # the launcher is gone (daemon stopped): stop forking, leave the runs be
            return
        sys.stdout.flush()  # or the child would write the server's pending output a second time
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as error:
            conn.send_bytes(json.dumps({"error": f"fork failed: {error}"}).encode())
            continue
        if pid == 0:
            _run_worker(conn, request)
        conn.send_bytes(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else [])
