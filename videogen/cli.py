"""``videogen``: submit requests and follow them from the command line.

    videogen submit "a red fox running in snow" --width 64 --height 64
    videogen status 42
    videogen list --status failed --user ana
    videogen cancel 42 | videogen retry 42 | videogen db upgrade

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


def cmd_submit(args: argparse.Namespace, settings) -> int:
    from videogen.generation.registry import ModelRegistry
    from videogen.lifecycle import JobRequest

    request = JobRequest(
        user_id=args.user, prompt=args.prompt, negative_prompt=args.negative_prompt, model=args.model,
        width=args.width, height=args.height, num_frames=args.num_frames, fps=args.fps, steps=args.steps,
        guidance_scale=args.guidance_scale, seed=args.seed, quality_preset=args.quality_preset,
        priority=args.priority, idempotency_key=args.idempotency_key,
    )
    submission = _store(settings).submit(request, registry=ModelRegistry.from_env())
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
                 "credits", "error_code", "error_message")


def cmd_status(args: argparse.Namespace, settings) -> int:
    store = _store(settings)
    row = store.get(args.job_id)
    payload = {name: row[name] for name in STATUS_FIELDS}
    payload["prompt"] = row["prompt"]
    payload["download_url"] = _download_url(settings, row)
    if args.events:
        payload["events"] = store.events(args.job_id)
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
    rows = _store(settings).list(status=args.status, user_id=args.user, created_from=args.since,
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
    status = _store(settings).cancel(args.job_id)
    _emit(args, {"id": args.job_id, "status": status}, f"job {args.job_id} {status}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, settings) -> int:
    submission = _store(settings).retry(args.job_id)
    _emit(args, {"id": args.job_id, "status": "pending", "submission": submission},
          f"job {args.job_id} pending again (submission {submission})")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, settings) -> int:
    from videogen.db.migrate import upgrade

    upgrade(settings.database_url, args.revision)
    _emit(args, {"upgraded_to": args.revision}, f"database upgraded to {args.revision}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videogen", description="Text-to-video jobs on the videogen platform.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", parents=[common], help="submit a prompt")
    submit.add_argument("prompt")
    submit.add_argument("--user", default="cli", help="user id (default: cli)")
    submit.add_argument("--negative-prompt", default="")
    submit.add_argument("--model", default=None, help="registered model name (default: tiny)")
    # Parameters stay strings here: validation parses them and names the problem in its message.
    for name in ("width", "height", "num-frames", "fps", "steps", "guidance-scale", "seed"):
        submit.add_argument(f"--{name}", default=None)
    submit.add_argument("--quality-preset", default=None, help="STANDARD, HD or ULTRA")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--idempotency-key", default=None, help="resubmitting the same key returns the same job")
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", parents=[common], help="show a job, its stage and progress")
    status.add_argument("job_id", type=int)
    status.add_argument("--events", action="store_true", help="include the audit trail (job_events)")
    status.set_defaults(func=cmd_status)

    listing = sub.add_parser("list", parents=[common], help="list jobs, newest first")
    listing.add_argument("--status", choices=["pending", "queued", "running", "succeeded", "failed", "rejected",
                                              "canceled"])
    listing.add_argument("--user")
    listing.add_argument("--since", type=_date, help="created at or after (YYYY-MM-DD, UTC)")
    listing.add_argument("--until", type=_date, help="created before (YYYY-MM-DD, UTC)")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(func=cmd_list)

    for name, func, text in (("cancel", cmd_cancel, "cancel a pending, queued or running job"),
                             ("retry", cmd_retry, "resubmit a failed or canceled job")):
        action = sub.add_parser(name, parents=[common], help=text)
        action.add_argument("job_id", type=int)
        action.set_defaults(func=func)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", parents=[common], help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    from videogen.config import load_settings
    from videogen.errors import JobNotFoundError, ValidationError, VideogenError

    args = build_parser().parse_args(argv)
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
    except Exception as error:  # database down, bad URL…: one readable line, not a traceback
        from sqlalchemy.exc import OperationalError

        if isinstance(error, OperationalError):
            _report_error(args, "database_unavailable", f"cannot reach the database: {error.orig}".strip())
            return EXIT_ERROR
        raise


def _report_error(args: argparse.Namespace, code: str, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error_code": code, "error_message": message}))
    else:
        print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
