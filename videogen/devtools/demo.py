"""The main job, end to end on the embedded defaults (``scripts/run_main_job.sh`` calls this).

Starts the generation service (``videogen serve-models``: a local Ray instance with the Serve app,
one CPU replica) unless ``VIDEOGEN_SERVE_URL`` names one, submits a few sample prompts as rows in
``jobs``, runs the real Dagster daemon (sensor → queued run coordinator → run launcher → ops, the
generation op a client of Serve) until every job is final, stops what it started, then prints per
job its status, output location, what ``ffprobe`` reports about the stored video and its audit trail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from videogen.config import load_settings
from videogen.db.migrate import upgrade
from videogen.db.schema import TERMINAL_STATUSES
from videogen.devtools.processes import start_in_new_session, stop_session
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import JobRequest, JobStore

SAMPLE_PROMPTS = (
    ("a red fox running in snow", {}),
    ("waves crashing on a rocky shore at sunset", {"width": "96", "height": "64", "num_frames": "17", "fps": "12"}),
    ("a paper boat drifting down a rainy street", {"quality_preset": "HD", "seed": "7"}),
)


def start_daemon(repo_root: Path, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The daemon in a session of its own, so that stopping the session stops its code server
    and run workers too (see videogen.devtools.processes)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return start_in_new_session(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(repo_root / "workspace.yaml")],
            log=log, cwd=repo_root, env=env,
        )


def start_generation_service(port: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    from serving.local import StartupError, start_in_background

    print(f"starting the generation service (Ray Serve); log: {log_path}", flush=True)
    try:
        process, url = start_in_background(port, log_path)
    except StartupError as error:
        raise SystemExit(str(error)) from None
    print(f"generation service ready at {url} (pid {process.pid})", flush=True)
    return process, url


def wait_for_final(store: JobStore, job_ids: list[int], timeout_s: float, daemon: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        statuses = {job_id: store.reads.get(job_id) for job_id in job_ids}
        line = ", ".join(f"{i}:{row['status']}" + (f"({row['stage']}"
                                                    + (f" {row['progress']:.0%}" if row["stage"] == "generate" else "")
                                                    + ")" if row["status"] == "running" else "")
                         for i, row in statuses.items())
        if line != last:
            print(f"  {time.strftime('%H:%M:%S')}  {line}", flush=True)
            last = line
        if all(row["status"] in TERMINAL_STATUSES for row in statuses.values()):
            return
        if daemon is not None and daemon.poll() is not None:
            raise SystemExit(f"the Dagster daemon exited ({daemon.returncode}); see its log")
        if time.monotonic() > deadline:
            raise SystemExit(f"jobs not final after {timeout_s:.0f} s: {line}")
        time.sleep(1.0)


def describe(settings, row: dict) -> list[str]:
    lines = [f"job {row['id']}: {row['status']}  prompt={row['prompt']!r}"]
    if row["status"] != "succeeded":
        lines.append(f"    error: {row['error_code']}: {row['error_message']}")
        return lines
    from videogen.encoding.probe import probe_video
    from videogen.storage.factory import storage_from_settings
    from videogen.stages import VIDEO_NAME
    from videogen.storage.job_outputs import job_key

    storage = storage_from_settings(settings)
    key = job_key(row["id"], VIDEO_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "video.mp4"
        local.write_bytes(storage.read_bytes(key))
        facts = probe_video(local)
    lines += [
        f"    output: {row['output_uri']}  ({row['output_size_bytes']} bytes, sha256 {row['output_sha256'][:12]}…)",
        f"    ffprobe: codec={facts.codec} {facts.width}x{facts.height} frames={facts.frame_count} "
        f"fps={facts.fps:g} duration={facts.duration_s:.3f}s pix_fmt={facts.pix_fmt}",
        f"    requested: {row['width']}x{row['height']} frames={row['num_frames']} fps={row['fps']} "
        f"steps={row['steps']} seed={row['seed']}  gpu_seconds={row['gpu_seconds']:.2f} credits={row['credits']}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--user", default="demo")
    args = parser.parse_args(argv)

    repo_root = Path(__file__).resolve().parents[2]
    settings = load_settings()
    upgrade(settings.database_url)
    store = JobStore(sa.create_engine(settings.database_url))
    registry = ModelRegistry.from_env()

    serve_url = settings.serve_url
    serve = None
    if serve_url is None:  # the embedded default: a local Ray Serve app, stopped at the end
        serve, serve_url = start_generation_service(settings.serve_port, settings.home / "logs" / "serve-models.log")
    daemon = None
    try:
        daemon = start_daemon(repo_root, settings.home / "logs" / "dagster-daemon.log",
                              env={**os.environ, "VIDEOGEN_SERVE_URL": serve_url})
        print(f"started dagster-daemon (pid {daemon.pid}); log: {settings.home / 'logs' / 'dagster-daemon.log'}")
        job_ids = []
        for prompt, params in SAMPLE_PROMPTS:
            submission = store.submissions.submit(JobRequest(user_id=args.user, prompt=prompt, **params), registry=registry)
            job_ids.append(submission.job_id)
            print(f"submitted job {submission.job_id}: {prompt!r} {params or ''}")
        wait_for_final(store, job_ids, args.timeout, daemon)
    finally:
        if daemon is not None:
            stop_session(daemon, grace_s=30)
        if serve is not None:
            stop_session(serve, grace_s=60)
    print()
    ok = True
    for job_id in job_ids:
        row = store.reads.get(job_id)
        ok &= row["status"] == "succeeded"
        print("\n".join(describe(settings, row)))
        print("    audit trail:")
        for event in store.reads.events(job_id):
            print(f"      {event['created_at']:%H:%M:%S.%f}"[:-3] + f"  {event['status']:9} {event['stage'] or '':9} "
                  f"{event['message'] or ''}")
    print()
    print("Open the Dagster UI on the same setup:  source scripts/env.sh && .venv/bin/dagster dev -w workspace.yaml")
    print("then http://127.0.0.1:3000 (jobs generate_video, submit_prompt; sensors; runs).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
