"""``videogen``: submit requests and follow them from the command line.

    videogen submit "a red fox running in snow" --width 64 --height 64
    videogen submit --prompt-file prompt.txt      # or --prompt-file - to read standard input
    videogen status 42
    videogen list --status failed --user ana
    videogen cancel 42 | videogen retry 42 | videogen db upgrade
    videogen serve-api                            # the HTTP API (see api/)
    videogen users create --email ana@example.com --role admin --password-env ANA_PASSWORD --credits 100
    videogen api-keys create --user-id u_… --name ci

Every command accepts ``--json`` for machine-readable output. Exit status: 0 success, 2 the request
was rejected or the arguments are invalid, 1 any other error (unknown job, not allowed, database down).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_REJECTED = 0, 1, 2
API_KEY_VARIABLE = "VIDEOGEN_API_KEY"
API_INT_PARAMETERS = ("width", "height", "num_frames", "fps", "steps", "seed")
# A prompt file is read up to this size: far beyond any valid prompt (2000 characters), so that a
# too-long prompt still gets validation's message with its length, but `--prompt-file /dev/zero`
# ends instead of filling memory.
MAX_PROMPT_FILE_BYTES = 16 * 1024 * 1024


class PromptFileError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, default=_json_default, sort_keys=True))
    else:
        print(text)


def _store(settings):
    import sqlalchemy as sa

    from videogen.lifecycle import JobStore

    return JobStore(sa.create_engine(settings.database_url, pool_pre_ping=True))


def _bounded_int(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high`` (the column's range), printed in full."""

    def parse(text: str) -> int:
        shown = text if len(text) <= 40 else text[:40] + "…"
        try:
            value = int(text)
        except ValueError:
            if text.strip().lstrip("+-").isdigit():  # digits beyond int()'s 4300-digit limit
                raise argparse.ArgumentTypeError(f"{shown} is out of range: allowed {low} to {high}") from None
            raise argparse.ArgumentTypeError(f"not a whole number: {shown!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed {low} to {high}")
        return value

    return parse


INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
_job_id = _bounded_int(1, INT64_MAX)


def read_prompt_file(path: str, *, what: str = "prompt") -> str | bytes:
    """The prompt in ``path`` (``-``: standard input), without a UTF-8 byte order mark or trailing line breaks.

    Text that is not valid UTF-8 comes back as bytes, so that validation rejects it with its usual
    ``invalid_encoding`` message (which names the offending byte and its offset)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_PROMPT_FILE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_PROMPT_FILE_BYTES + 1)
    except OSError as exc:
        where = "standard input" if path == "-" else f"the {what} file {path!r}"
        raise PromptFileError(f"{what}_file_unreadable", f"cannot read {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_PROMPT_FILE_BYTES:
        from videogen.validation import MAX_PROMPT_CHARS

        raise PromptFileError(
            f"{what}_too_long",
            f"{what} is more than {MAX_PROMPT_FILE_BYTES} bytes; the maximum is {MAX_PROMPT_CHARS} characters"
            if what == "prompt" else f"{what} is more than {MAX_PROMPT_FILE_BYTES} bytes",
        )
    data = data.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")  # an editor's byte order mark, final newlines
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _date(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD or an ISO timestamp)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _download_url(settings, row: dict[str, Any]) -> str | None:
    if row.get("status") != "succeeded" or not row.get("output_uri"):
        return None
    from videogen.storage.factory import storage_from_settings
    from videogen.stages import VIDEO_NAME
    from videogen.storage.job_outputs import job_key

    storage = storage_from_settings(settings)
    return storage.presigned_url(job_key(row["id"], VIDEO_NAME), settings.presign_expiry_s)


def _prompt_and_storyboard(args: argparse.Namespace) -> tuple[Any, Any]:
    """The prompt (argument or file) and the storyboard's text (or None); raises PromptFileError."""
    storyboard = None
    if args.storyboard is not None:
        storyboard = read_prompt_file(args.storyboard, what="storyboard")
    if args.prompt_file is not None:
        return read_prompt_file(args.prompt_file), storyboard
    if args.prompt is None and storyboard is not None:
        return _film_title(storyboard), storyboard
    return args.prompt, storyboard


def _upload_audio_prompt(settings, user: str, path: str) -> str:
    """Upload the audio file under the user's uploads (videogen.storage.uploads); its key."""
    from pathlib import Path

    from videogen.storage.factory import storage_from_settings
    from videogen.storage.uploads import upload_key

    source = Path(path)
    if not source.is_file():
        raise PromptFileError("audio_prompt_unreadable", f"cannot read the audio prompt {path!r}: no such file")
    key = upload_key(user, source, kind="audio")
    storage_from_settings(settings).put_file(key, source)
    return key


def _film_title(storyboard: str) -> str:
    """A film submitted without a prompt is named after its title, or its first scene."""
    try:
        document = json.loads(storyboard)
        title = document.get("title") or document["scenes"][0]["prompt"]
        return title if isinstance(title, str) else ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "film"  # the storyboard itself is invalid: its validation says why


def cmd_submit(args: argparse.Namespace, settings) -> int:
    from videogen.generation.registry import ModelRegistry
    from videogen.lifecycle import JobRequest

    try:
        prompt, storyboard = _prompt_and_storyboard(args)
        audio_prompt_key = None
        if args.audio_prompt is not None:
            audio_prompt_key = _upload_audio_prompt(settings, args.user, args.audio_prompt)
            prompt = ""
    except PromptFileError as error:
        _report_error(args, error.code, error.message)
        return EXIT_REJECTED
    request = JobRequest(
        storyboard=storyboard, audio_prompt_key=audio_prompt_key,
        user_id=args.user, prompt=prompt, negative_prompt=args.negative_prompt, model=args.model,
        width=args.width, height=args.height, num_frames=args.num_frames, fps=args.fps, steps=args.steps,
        guidance_scale=args.guidance_scale, seed=args.seed, quality_preset=args.quality_preset,
        priority=args.priority, idempotency_key=args.idempotency_key,
    )
    submission = _store(settings).submissions.submit(request, registry=ModelRegistry.from_env())
    payload = {"id": submission.job_id, "status": submission.status, "created": submission.created,
               "error_code": submission.error_code, "error_message": submission.error_message}
    if submission.status == "rejected":
        _emit(args, payload, f"job {submission.job_id} rejected: {submission.error_message}")
        return EXIT_REJECTED
    note = "" if submission.created else " (existing job for this idempotency key)"
    _emit(args, payload, f"job {submission.job_id} {submission.status}{note}")
    return EXIT_OK


STATUS_FIELDS = ("id", "user_id", "status", "stage", "progress", "model", "width", "height", "num_frames", "fps",
                 "steps", "seed", "quality_preset", "priority", "attempts", "created_at", "started_at",
                 "finished_at", "run_id", "worker", "output_uri", "output_size_bytes", "output_sha256", "gpu_seconds",
                 "credits", "error_code", "error_message", "transcript")


def cmd_status(args: argparse.Namespace, settings) -> int:
    store = _store(settings)
    row = store.reads.get(args.job_id)
    payload = {name: row[name] for name in STATUS_FIELDS}
    payload["prompt"] = row["prompt"]
    payload["download_url"] = _download_url(settings, row)
    if args.events:
        payload["events"] = store.reads.events(args.job_id)
    lines = [f"job {row['id']}: {row['status']}"
             + (f" (stage {row['stage']}, {row['progress'] * 100:.0f}%)" if row["status"] == "running" else "")]
    for name in STATUS_FIELDS[1:]:
        if row[name] is not None and name not in ("status",):
            lines.append(f"  {name:18} {row[name]}")
    if payload["download_url"]:
        lines.append(f"  {'download_url':18} {payload['download_url']}")
    for event in payload.get("events", []):
        lines.append(f"  - {event['created_at']:%Y-%m-%d %H:%M:%S} {event['status']:9} {event['stage'] or '':10} "
                     f"{event['message'] or ''}")
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings) -> int:
    rows = _store(settings).reads.list(status=args.status, user_id=args.user, created_from=args.since,
                                 created_to=args.until, limit=args.limit, offset=args.offset)
    payload = {"jobs": [{k: r[k] for k in ("id", "user_id", "status", "stage", "model", "created_at",
                                            "finished_at", "output_uri", "error_code")} | {"prompt": r["prompt"]}
                        for r in rows],
               "limit": args.limit, "offset": args.offset}
    lines = [f"{'id':>8}  {'status':9}  {'user':12}  {'created (UTC)':19}  prompt"]
    for r in rows:
        prompt = r["prompt"] if len(r["prompt"]) <= 50 else r["prompt"][:49] + "…"
        lines.append(f"{r['id']:>8}  {r['status']:9}  {r['user_id'][:12]:12}  "
                     f"{r['created_at'].astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}  {prompt}")
    if len(rows) == args.limit:
        lines.append(f"(more: --offset {args.offset + args.limit})")
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings) -> int:
    status = _store(settings).operator.cancel(args.job_id)
    _emit(args, {"id": args.job_id, "status": status}, f"job {args.job_id} {status}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, settings) -> int:
    submission = _store(settings).operator.retry(args.job_id)
    _emit(args, {"id": args.job_id, "status": "pending", "submission": submission},
          f"job {args.job_id} pending again (submission {submission})")
    return EXIT_OK


def cmd_serve_models(args: argparse.Namespace, settings) -> int:
    from serving.local import main as serve_models

    argv = [f"--{name.replace('_', '-')}={value}" for name in ("host", "port", "num_cpus")
            if (value := getattr(args, name)) is not None]
    return serve_models(argv)


def cmd_serve_api(args: argparse.Namespace, settings) -> int:
    import os

    import uvicorn

    from videogen.devtools.ports import port_problem

    host = args.host or settings.api_host
    port = int(args.port) if args.port else settings.api_port
    problem = port_problem(host, port)  # a clear line instead of uvicorn's traceback
    if problem:
        _report_error(args, "port_unavailable", f"cannot listen on {host}:{port} ({problem}); "
                                                "set VIDEOGEN_API_LISTEN_PORT or --port to a free port")
        return EXIT_ERROR
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here; /metrics merges them (prometheus-client's
        # multiprocess mode). Set before the workers start; emptied at each start.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="videogen-api-metrics-")
    from videogen.logs import uvicorn_log_config

    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=args.workers,
                log_config=uvicorn_log_config("api"),
                log_level="info", proxy_headers=True, timeout_graceful_shutdown=10)
    return EXIT_OK


def _accounts(settings):
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
    from videogen.accounts.credits import CreditLedger
    from videogen.accounts.keys import ApiKeys
    from videogen.accounts.users import Users

    return Users(engine), ApiKeys(engine), CreditLedger(engine)


def cmd_users_create(args: argparse.Namespace, settings) -> int:
    import os

    users, _, ledger = _accounts(settings)
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            _report_error(args, "missing_password", f"the environment variable {args.password_env} is not set")
            return EXIT_REJECTED
    user = users.create(args.email, password, role=args.role)
    if args.credits:
        ledger.grant(user["id"], args.credits, by="cli", note="granted at creation")
    user = users.get(user["id"])
    _emit(args, user, f"user {user['id']} ({user['email']}, {user['role']}), balance {user['credit_balance']}")
    return EXIT_OK


def cmd_users_grant(args: argparse.Namespace, settings) -> int:
    _, _, ledger = _accounts(settings)
    balance = ledger.grant(args.user_id, args.amount, by="cli", note=args.note)
    _emit(args, {"user_id": args.user_id, "credit_balance": balance}, f"user {args.user_id}: balance {balance}")
    return EXIT_OK


def cmd_api_keys_create(args: argparse.Namespace, settings) -> int:
    users, keys, _ = _accounts(settings)
    users.get(args.user_id)
    issued = keys.create(args.user_id, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()])
    # The key is printed once, to standard output only: the caller stores it.
    _emit(args, {"id": issued.id, "prefix": issued.prefix, "key": issued.key}, issued.key)
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, settings) -> int:
    from videogen.db.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    _emit(args, {"upgraded_to": args.revision}, f"database upgraded to {args.revision}")
    return EXIT_OK


def cmd_db_recount(args: argparse.Namespace, settings) -> int:
    import sqlalchemy as sa

    from videogen.db.counts import recount

    engine = sa.create_engine(settings.database_url)
    try:
        done = recount(engine)
    finally:
        engine.dispose()
    _emit(args, {"waiting_before": done.waiting_before, "waiting": done.waiting,
                 "accounts_corrected": done.accounts_corrected},
          f"waiting jobs: {done.waiting} (the slots said {done.waiting_before}); "
          f"accounts whose active-jobs count was corrected: {done.accounts_corrected}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videogen", description="Text-to-video jobs on the videogen platform.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    remote = argparse.ArgumentParser(add_help=False, parents=[common])
    remote.add_argument("--api", metavar="URL", default=None,
                        help=f"act through the HTTP API at URL with the key in ${API_KEY_VARIABLE} (no database "
                             "credentials needed; jobs belong to the key's account)")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", parents=[remote], help="submit a prompt")
    submit.add_argument("prompt", nargs="?", help="the prompt (or use --prompt-file)")
    submit.add_argument("--prompt-file", metavar="PATH",
                        help="read the prompt from a UTF-8 file ('-': standard input); trailing line breaks "
                             "are dropped")
    submit.add_argument("--storyboard", metavar="PATH",
                        help="make a film: a JSON storyboard of scenes ('-': standard input); the prompt is then "
                             "the film's title (default: its first scene's prompt)")
    submit.add_argument("--audio-prompt", metavar="PATH",
                        help="speak the prompt: a WAV, MP3, M4A or OGG file (at most 60 s), uploaded to the bucket "
                             "and transcribed offline by the run; the transcript becomes the prompt")
    submit.add_argument("--user", default="cli", help="user id (default: cli)")
    submit.add_argument("--negative-prompt", default="")
    submit.add_argument("--model", default=None, help="registered model name (default: tiny)")
    # Parameters stay strings here: validation parses them and names the problem in its message.
    for name in ("width", "height", "num-frames", "fps", "steps", "guidance-scale", "seed"):
        submit.add_argument(f"--{name}", default=None)
    submit.add_argument("--quality-preset", default=None, help="STANDARD, HD or ULTRA")
    submit.add_argument("--priority", type=_bounded_int(-INT32_MAX - 1, INT32_MAX), default=0,
                        help="higher runs first (default: 0)")
    submit.add_argument("--idempotency-key", default=None, help="resubmitting the same key returns the same job")
    submit.set_defaults(func=cmd_submit, check=_check_submit_arguments(submit))

    status = sub.add_parser("status", parents=[remote], help="show a job, its stage and progress")
    status.add_argument("job_id", type=_job_id)
    status.add_argument("--events", action="store_true", help="include the audit trail (job_events)")
    status.set_defaults(func=cmd_status)

    listing = sub.add_parser("list", parents=[remote], help="list jobs, newest first")
    listing.add_argument("--status", choices=["pending", "queued", "running", "succeeded", "failed", "rejected",
                                              "canceled"])
    listing.add_argument("--user")
    listing.add_argument("--since", type=_date, help="created at or after (YYYY-MM-DD, UTC)")
    listing.add_argument("--until", type=_date, help="created before (YYYY-MM-DD, UTC)")
    listing.add_argument("--limit", type=_bounded_int(1, INT64_MAX), default=20)
    listing.add_argument("--offset", type=_bounded_int(0, INT64_MAX), default=0)
    listing.set_defaults(func=cmd_list)

    for name, func, text in (("cancel", cmd_cancel, "cancel a pending, queued or running job"),
                             ("retry", cmd_retry, "resubmit a failed or canceled job")):
        action = sub.add_parser(name, parents=[remote], help=text)
        action.add_argument("job_id", type=_job_id)
        action.set_defaults(func=func)

    serve_models = sub.add_parser("serve-models", help="run the generation service (local Ray Serve) until stopped")
    serve_models.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve_models.add_argument("--port", default=None, help="HTTP port (default VIDEOGEN_SERVE_PORT, 8700)")
    serve_models.add_argument("--num-cpus", default=None, help="CPUs of the local Ray instance and the replica (default VIDEOGEN_SERVE_NUM_CPUS, 2)")
    serve_models.set_defaults(func=cmd_serve_models, json=False)

    serve_api = sub.add_parser("serve-api", help="run the HTTP API (uvicorn) until stopped")
    serve_api.add_argument("--host", default=None, help="address to listen on (default VIDEOGEN_API_LISTEN_HOST, 127.0.0.1)")
    serve_api.add_argument("--port", type=_bounded_int(1, 65535), default=None,
                           help="port (default VIDEOGEN_API_LISTEN_PORT, 8800)")
    serve_api.add_argument("--workers", type=_bounded_int(1, 64), default=1, help="worker processes (default 1)")
    serve_api.set_defaults(func=cmd_serve_api, json=False)

    users = sub.add_parser("users", help="API accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create_user = users_sub.add_parser("create", parents=[common], help="create an account")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--role", choices=["user", "support", "admin"], default="user")
    create_user.add_argument("--password-env", metavar="VAR",
                             help="read the password from this environment variable (never an argument: "
                                  "arguments are visible to every user of the machine); none: API keys only")
    create_user.add_argument("--credits", default=None, help="credits granted at creation")
    create_user.set_defaults(func=cmd_users_create)
    grant = users_sub.add_parser("grant", parents=[common], help="add credits to an account")
    grant.add_argument("user_id")
    grant.add_argument("amount")
    grant.add_argument("--note", default=None)
    grant.set_defaults(func=cmd_users_grant)

    api_keys = sub.add_parser("api-keys", help="API keys of accounts")
    keys_sub = api_keys.add_subparsers(dest="keys_command", required=True)
    create_key = keys_sub.add_parser("create", parents=[common], help="create a key; it is printed once")
    create_key.add_argument("--user-id", required=True)
    create_key.add_argument("--name", required=True)
    create_key.add_argument("--scopes", default="read,write", help="comma-separated: read, write")
    create_key.set_defaults(func=cmd_api_keys_create)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", parents=[common], help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)
    recount = db_sub.add_parser("recount", parents=[common], help="set the counts kept by triggers (active jobs "
                                "per account, waiting jobs) from the jobs table, after a load that bypassed them")
    recount.set_defaults(func=cmd_db_recount)
    return parser


def _check_submit_arguments(submit: argparse.ArgumentParser):
    def check(args: argparse.Namespace) -> None:
        if args.prompt is not None and args.prompt_file is not None:
            submit.error("give the prompt either as an argument or with --prompt-file, not both")
        if args.audio_prompt is not None and (args.prompt is not None or args.prompt_file is not None):
            submit.error("give either a prompt or --audio-prompt, not both")
        if args.audio_prompt is not None and args.api:
            submit.error("--audio-prompt uploads to the bucket: use it without --api")
        if args.prompt is None and args.prompt_file is None and args.storyboard is None and args.audio_prompt is None:
            submit.error("the prompt is required: give it as an argument or with --prompt-file PATH "
                         "('-' reads standard input)")

    return check


def main(argv: list[str] | None = None) -> int:
    from videogen.config import ConfigError, load_settings
    from videogen.errors import JobNotFoundError, ValidationError, VideogenError

    args = build_parser().parse_args(argv)
    if getattr(args, "check", None) is not None:
        args.check(args)
    if getattr(args, "api", None):
        return _run_through_api(args)
    try:
        return args.func(args, load_settings())
    except ValidationError as error:
        _report_error(args, error.code, error.message)
        return EXIT_REJECTED
    except JobNotFoundError as error:
        _report_error(args, error.code, error.message)
        return EXIT_ERROR
    except VideogenError as error:
        _report_error(args, error.code, error.message)
        return EXIT_ERROR
    except ConfigError as error:  # names the variable; never shows a secret's value
        _report_error(args, "invalid_configuration", str(error))
        return EXIT_ERROR
    except Exception as error:  # database down, bad URL…: one readable line, not a traceback
        from sqlalchemy.exc import OperationalError

        if isinstance(error, OperationalError):
            _report_error(args, "database_unavailable", f"cannot reach the database: {error.orig}".strip())
            return EXIT_ERROR
        raise


def _api_request_body(args: argparse.Namespace, prompt: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, "negative_prompt": args.negative_prompt, "priority": args.priority}
    for name in ("model", "width", "height", "num_frames", "fps", "steps", "guidance_scale", "seed", "quality_preset"):
        raw = getattr(args, name)
        if raw is None:
            continue
        try:  # the API is strict about types; a value that is not a number goes as typed and is refused there
            body[name] = int(raw) if name in API_INT_PARAMETERS else float(raw) if name == "guidance_scale" else raw
        except ValueError:
            body[name] = raw
    return body


def _run_through_api(args: argparse.Namespace) -> int:
    """submit, status, list, cancel and retry through the HTTP API (``--api URL``)."""
    import os

    from videogen.api_client import ApiCallError, ApiClient

    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not key:
        _report_error(args, "missing_api_key", f"--api needs an API key in the environment variable {API_KEY_VARIABLE}")
        return EXIT_ERROR
    try:
        with ApiClient(args.api, key) as api:
            if args.command == "submit":
                try:
                    prompt, storyboard = _prompt_and_storyboard(args)
                except PromptFileError as error:
                    _report_error(args, error.code, error.message)
                    return EXIT_REJECTED
                if isinstance(prompt, bytes):
                    prompt = prompt.decode("utf-8", errors="replace")
                body = _api_request_body(args, prompt)
                if storyboard is not None:
                    try:  # the API takes the storyboard as JSON; text that is not JSON goes as text and is refused there
                        body["storyboard"] = json.loads(storyboard)
                    except (ValueError, TypeError):
                        body["storyboard"] = storyboard if isinstance(storyboard, str) else storyboard.decode(
                            "utf-8", errors="replace")
                created, job = api.submit(body, args.idempotency_key)
                note = "" if created else " (existing job for this idempotency key)"
                _emit(args, job, f"job {job['id']} {job['status']}{note}")
            elif args.command == "status":
                job = api.get(args.job_id)
                if args.events:
                    job["events"] = api.events(args.job_id)
                lines = [f"job {job['id']}: {job['status']}"
                         + (f" (stage {job['stage']}, {job['progress'] * 100:.0f}%)" if job["status"] == "running" else "")]
                for name in ("user_id", "stage", "model", "queue_position", "attempts", "created_at", "finished_at",
                             "credits", "video_url"):
                    if job.get(name) is not None:
                        lines.append(f"  {name:18} {job[name]}")
                if job.get("error"):
                    lines.append(f"  {'error':18} {job['error']['code']}: {job['error']['message']}")
                for event in job.get("events", []):
                    lines.append(f"  - {event['created_at']} {event['status']:9} {event['stage'] or '':10} "
                                 f"{event['message'] or ''}")
                _emit(args, job, "\n".join(lines))
            elif args.command == "list":
                page = api.list(status=args.status, user_id=args.user, limit=min(args.limit, 100),
                                created_from=args.since.isoformat() if args.since else None,
                                created_to=args.until.isoformat() if args.until else None)
                lines = [f"{'id':>8}  {'status':9}  {'created (UTC)':25}  prompt"]
                for job in page["items"]:
                    prompt = job["prompt"] if len(job["prompt"]) <= 50 else job["prompt"][:49] + "…"
                    lines.append(f"{job['id']:>8}  {job['status']:9}  {job['created_at'][:25]:25}  {prompt}")
                _emit(args, page, "\n".join(lines))
            elif args.command in ("cancel", "retry"):
                job = getattr(api, args.command)(args.job_id)
                _emit(args, job, f"job {job['id']} {job['status']}")
    except ApiCallError as error:
        _report_error(args, error.code, error.message)
        return EXIT_REJECTED if error.status == 422 else EXIT_ERROR
    return EXIT_OK


def _report_error(args: argparse.Namespace, code: str, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error_code": code, "error_message": message}))
    else:
        print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
