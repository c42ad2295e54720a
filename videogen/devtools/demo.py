"""The main job, end to end on the embedded defaults (``scripts/run_main_job.sh`` calls this).

Starts the generation service (``videogen serve-models``: a local Ray instance with the Serve app,
one CPU replica) unless ``VIDEOGEN_SERVE_URL`` names one, the HTTP API (``videogen serve-api``) and
the real Dagster daemon (sensor → queued run coordinator → run launcher → ops, the generation op a
client of Serve); creates a demo account with credits and an API key, submits a few sample prompts
**through the HTTP API with that key**, follows them until every job is final, stops what it
started, then prints per job its status, output location, what ``ffprobe`` reports about the
stored video and its audit trail, and the account's balance.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from videogen.config import load_settings
from videogen.db.migrate import upgrade
from videogen.db.schema import TERMINAL_STATUSES
from videogen.devtools.ports import port_problem
from videogen.devtools.processes import start_in_new_session, stop_session
from videogen.lifecycle import JobStore
from videogen.secret_files import kept_secret

SAMPLE_PROMPTS = (
    ("a red fox running in snow", {}),
    ("waves crashing on a rocky shore at sunset", {"width": 96, "height": 64, "num_frames": 17, "fps": 12}),
    ("a paper boat drifting down a rainy street", {"quality_preset": "HD", "seed": 7}),
)
# A short film: two scenes, narrated (offline TTS), over the generated music bed, with subtitles.
SAMPLE_FILM = ("A fox's morning", {"seed": 7, "storyboard": {
    "scenes": [{"prompt": "a red fox wakes in its den", "duration_s": 2, "narration": "At dawn, the fox wakes.",
                "transition": "crossfade"},
               {"prompt": "a red fox running in snow", "duration_s": 2, "narration": "It runs across the snow."}],
    "voice": "slt", "music": "generated", "subtitles": "sidecar"}})
DEMO_EMAIL = "demo@videogen.example"
DEMO_CREDITS = Decimal("100")


def start_daemon(repo_root: Path, log_path: Path, env: dict[str, str] | None = None, *,
                 nice: int = 0) -> subprocess.Popen:
    """The daemon in a session of its own, so that stopping the session stops its code server
    and run workers too (see videogen.devtools.processes), at CPU niceness ``nice`` (the session's)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return start_in_new_session(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "--log-format", "json", "-w", str(repo_root / "workspace.yaml")],
            log=log, cwd=repo_root, env=env, nice=nice,
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


def start_api(repo_root: Path, host: str, port: int, log_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``videogen serve-api`` in a session of its own; returns once ``/ready`` answers."""
    import httpx

    problem = port_problem(host, port)
    if problem:
        raise SystemExit(f"cannot start the API on {host}:{port} ({problem}): another program uses the port; "
                         "set VIDEOGEN_API_LISTEN_PORT to a free one")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = start_in_new_session([sys.executable, "-m", "videogen.cli", "serve-api", "--host", host,
                                        "--port", str(port)], log=log, cwd=repo_root, env=env)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the API exited ({process.returncode}); see {log_path}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_session(process, grace_s=10)
            raise SystemExit(f"the API was not ready after 60 s; see {log_path}")
        time.sleep(0.2)
    print(f"started the HTTP API at {url} (pid {process.pid}; OpenAPI at {url}/docs); log: {log_path}", flush=True)
    return process, url


DEMO_PASSWORD_FILE = "demo-password"


def demo_password(home: Path) -> str:
    """The demo account's password for the web app: made once per VIDEOGEN_HOME, kept there (0600)."""
    return kept_secret(home / DEMO_PASSWORD_FILE, lambda: secrets.token_urlsafe(12))


def demo_api_key(engine: sa.Engine, email: str, home: Path) -> tuple[str, str]:
    """The demo account (made once, topped up to DEMO_CREDITS, its web password set) and a new API key
    for this run."""
    from videogen.accounts.credits import CreditLedger
    from videogen.accounts.keys import ApiKeys
    from videogen.accounts.users import Users

    users = Users(engine)
    account = users.by_email(email) or users.create(email, None)
    users.set_password(account["id"], demo_password(home))
    if account["credit_balance"] < DEMO_CREDITS:
        CreditLedger(engine).grant(account["id"], DEMO_CREDITS - account["credit_balance"], by="main job",
                                   note="demo credits")
    issued = ApiKeys(engine).create(account["id"], f"main job {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"demo account {account['id']} ({email}); API key {issued.prefix}… created for this run")
    return account["id"], issued.key


def submit_through_api(url: str, key: str) -> list[int]:
    import httpx

    job_ids = []
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        for prompt, params in (*SAMPLE_PROMPTS, SAMPLE_FILM):
            response = http.post("/api/v1/jobs", json={"prompt": prompt, **params})
            if response.status_code != 201:
                raise SystemExit(f"POST /api/v1/jobs answered {response.status_code}: {response.text}")
            job = response.json()
            job_ids.append(job["id"])
            what = f"a film of {len(params['storyboard']['scenes'])} scenes" if "storyboard" in params else params or ""
            print(f"submitted job {job['id']} through POST {url}/api/v1/jobs: {prompt!r} {what}")
    return job_ids


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
        f"steps={row['steps']} seed={row['seed']}  gpu_seconds={row['gpu_seconds'] or 0:.2f} credits={row['credits']}",
    ]
    metadata = json.loads(storage.read_bytes(job_key(row["id"], "metadata.json")))
    quality = metadata.get("quality") or {}
    lines.append(f"    QA: {'passed' if quality.get('passed') else 'not recorded'} "
                 f"({', '.join(g['gate'] for g in quality.get('gates', []))})")
    if metadata.get("film"):
        scenes = metadata["film"]["scenes"]
        cached = sum(1 for scene in scenes if scene["from_cache"])
        lines.append(f"    film: {len(scenes)} scenes ({', '.join(str(s['frames']) + ' frames' for s in scenes)}; "
                     f"{cached} from the scene cache), "
                     f"audio {quality.get('measured', {}).get('integrated_lufs')} LUFS, "
                     f"subtitles {metadata['film']['storyboard']['subtitles']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--email", default=DEMO_EMAIL, help="the demo account (created on first use)")
    args = parser.parse_args(argv)

    repo_root = Path(__file__).resolve().parents[2]
    settings = load_settings()
    upgrade(settings.database_url)
    engine = sa.create_engine(settings.database_url)
    store = JobStore(engine)
    user_id, key = demo_api_key(engine, args.email, Path(settings.home))

    serve_url = settings.serve_url
    serve = None
    if serve_url is None:  # the embedded default: a local Ray Serve app, stopped at the end
        serve, serve_url = start_generation_service(settings.serve_port, settings.home / "logs" / "serve-models.log")
    daemon = api = None
    try:
        api, api_url = start_api(repo_root, settings.api_host, settings.api_port, settings.home / "logs" / "api.log",
                                 env=dict(os.environ))
        daemon = start_daemon(repo_root, settings.home / "logs" / "dagster-daemon.log",
                              env={**os.environ, "VIDEOGEN_SERVE_URL": serve_url}, nice=settings.orchestration_nice)
        print(f"started dagster-daemon (pid {daemon.pid}, nice {settings.orchestration_nice}); "
              f"log: {settings.home / 'logs' / 'dagster-daemon.log'}")
        job_ids = submit_through_api(api_url, key)
        wait_for_final(store, job_ids, args.timeout, daemon)
    finally:
        if daemon is not None:
            stop_session(daemon, grace_s=30)
        if api is not None:
            stop_session(api, grace_s=20)
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
    from videogen.accounts.users import Users

    print(f"\ndemo account {user_id}: balance {Users(engine).get(user_id)['credit_balance']} credits "
          f"(granted {DEMO_CREDITS}; each succeeded job is charged its credits, the others refunded)")
    print(f"HTTP API used: {api_url} (stopped with the main job; `videogen serve-api` starts it again, "
          f"OpenAPI at {api_url}/docs, Prometheus metrics at {api_url}/metrics)")
    print(f"Web app: {api_url}/videos — sign in as {args.email} with password {demo_password(Path(settings.home))} "
          "(the password is kept in VIDEOGEN_HOME/demo-password); these jobs are in its \"My videos\". "
          "Start it again with: source scripts/env.sh && .venv/bin/videogen serve-api")
    print("Open the Dagster UI on the same setup:  source scripts/env.sh && .venv/bin/dagster dev -w workspace.yaml")
    print("then http://127.0.0.1:3000 (jobs generate_video, generate_film, submit_prompt; sensors; runs).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
