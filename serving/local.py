"""``videogen serve-models``: a local Ray instance with the ``videogen`` Serve app, until stopped.

The embedded default of the README's main job and of the tests: one machine, one CPU replica.
Prints ``ready <url>`` on its own line once ``GET <url>/health`` answers, then waits for SIGTERM or
SIGINT and shuts Serve and Ray down. Startup problems that a person can fix (the port is taken,
not enough memory) are one line on stderr and exit status 1, before Ray is started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from videogen.config import load_settings
from videogen.devtools.ports import port_problem
from videogen.devtools.processes import descendants, kill_survivors, start_in_new_session, stop_session

# What a local Ray instance (GCS, raylet, Serve controller and proxy) and one CPU replica of the
# tiny model need, measured on this project's 2-core machine: ~1.6 GiB resident. Below this a
# start would be killed by the kernel half-way, which is a worse message.
MIN_AVAILABLE_MEMORY_BYTES = 2 * 1024**3
READY_TIMEOUT_S = 300.0


class StartupError(Exception):
    pass


def available_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return sys.maxsize  # not Linux: no check


def check_can_start(host: str, port: int) -> None:
    problem = port_problem(host, port)
    if problem:
        raise StartupError(f"port {port} on {host} is in use ({problem}): stop what listens there or "
                           "choose another port with VIDEOGEN_SERVE_PORT / --port")
    available = available_memory_bytes()
    if available < MIN_AVAILABLE_MEMORY_BYTES:
        raise StartupError(f"not enough memory to start the generation service: {available / 1024**3:.1f} GiB "
                           f"available, it needs about {MIN_AVAILABLE_MEMORY_BYTES / 1024**3:.0f} GiB "
                           "(Ray, the Serve proxy and one replica with its model)")


def wait_until_healthy(url: str, timeout_s: float) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            response = requests.get(url + "/health", timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.5)
    raise StartupError(f"the generation service at {url} was not healthy after {timeout_s:.0f} s: {last}")


def start_in_background(port: int, log_path: Path, *, env: dict[str, str] | None = None,
                        timeout_s: float = READY_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """``videogen serve-models --port port`` in a session of its own (stop it with
    :func:`videogen.devtools.processes.stop_session`); returns it and its URL once it prints ``ready``.

    Raises :class:`StartupError` with its ``error:`` line (or its log's tail) when it cannot start."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = start_in_new_session([str(Path(sys.executable).with_name("videogen")), "serve-models",
                                        "--port", str(port)], log=log, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while f"ready {url}" not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            text = log_path.read_text(errors="replace")
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            raise StartupError(errors[-1] if errors else
                               f"videogen serve-models exited ({process.returncode}): {text[-3000:]}")
        if time.monotonic() > deadline:
            stop_session(process)
            raise StartupError(f"videogen serve-models was not ready after {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.5)
    return process, url


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="videogen serve-models", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.serve_port)
    parser.add_argument("--num-cpus", type=int, default=settings.serve_num_cpus)
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.port}"
    try:
        check_can_start(args.host, args.port)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def stop_on_signals() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

    stop_on_signals()
    import ray
    from ray import serve

    from serving.app import APP_NAME, build_app

    # address="local": always a new instance of our own, never one that another program started.
    ray_context = ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                           object_store_memory=256 * 1024**2, log_to_driver=False, namespace=APP_NAME)
    # ray.init replaces the SIGTERM handler with its own (sys.exit, and a native crash handler that
    # then kills the process half-way through the shutdown below): take it back.
    stop_on_signals()
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(), name=APP_NAME, route_prefix="/", blocking=False)
        wait_until_healthy(url, READY_TIMEOUT_S)
        # Where the replicas' logs are (JSON lines, one file per replica under serve/).
        print(f"ray logs {Path(ray_context.address_info['session_dir']) / 'logs'}", flush=True)
        print(f"ready {url}", flush=True)
        while not stop.wait(0.5):
            pass
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        # Ray leaves its dashboard and runtime-env agents running after ray.shutdown(); end every
        # process this command started, and only those (never the session of the shell it runs in).
        started = descendants(os.getpid())
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            kill_survivors(started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
