"""Jobs: submit, read, list, cancel, retry, audit trail, live progress (SSE) and downloads.

A `user` sees and acts on their own jobs only: another user's job answers 404 exactly like a job that
does not exist, so ids do not leak. `support` reads every job and changes none; `admin` does all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from api.context import ApiContext
from api.deps import Caller, Context, Viewer, require_write
from api.errors import error_body
from api.schemas import JobCreate, JobDraft, JobError, JobEventOut, JobOut, JobPage, ProblemOut, QuoteOut, Status
from videogen.accounts.users import Principal
from videogen.db.schema import REQUEST_PARAMETERS, TERMINAL_STATUSES
from videogen.errors import JobNotFoundError, PermissionDeniedError, ValidationError
from videogen.lifecycle import JobRequest
from videogen.lifecycle.submission import validate_any
from videogen.storage.job_outputs import job_key
from videogen.storage.uploads import check_owned
from videogen.validation import given
from videogen.webhooks import check_callback_url

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
logger = logging.getLogger("videogen.api.jobs")

MAX_IDEMPOTENCY_KEY = 200
STREAM_POLL_S = 0.2
STREAM_KEEPALIVE_S = 15.0
# A film's other outputs a person may fetch; everything else under videos/<id>/ (metadata.json with
# its cache keys, a half-written upload) stays private. Name → media type (the player's <track> wants text/vtt).
OUTPUT_FILES = re.compile(r"subtitles\.(srt|vtt)|scene_[0-9]{2}\.png")
OUTPUT_TYPES = {".srt": "application/x-subrip", ".vtt": "text/vtt", ".png": "image/png"}
INT_PARAMETERS = ("width", "height", "num_frames", "fps", "steps", "seed")
MAX_JOB_ID = 2**63 - 1  # jobs.id is a bigint: larger ids take the route, which answers 404


def _number(name: str, raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return int(raw) if name in INT_PARAMETERS else float(raw) if name == "guidance_scale" else raw
    except ValueError:
        return raw  # a rejected job keeps what was sent


def _download_url(ctx: ApiContext, job: dict[str, Any], uri: str | None, what: str) -> str | None:
    if not uri or job["status"] != "succeeded":
        return None
    if _presigns(ctx, job):
        return ctx.storage.presigned_url(job_key(job["id"], uri.rsplit("/", 1)[-1]), ctx.settings.presign_expiry_s)
    return f"/api/v1/jobs/{job['id']}/{what}"


def _presigns(ctx: ApiContext, job: dict[str, Any]) -> bool:
    """Whether job_out() presigns S3 links (what _download_url decides): the client may fetch
    credentials over the network (instance metadata, STS), which must not block the event loop."""
    return ctx.settings.storage_backend == "s3" and job["status"] == "succeeded"


def job_out(ctx: ApiContext, job: dict[str, Any], queue_position: int | None = None) -> JobOut:
    parameters = {name: _number(name, job[name]) for name in REQUEST_PARAMETERS if name != "model"}
    error = JobError(code=job["error_code"], message=job["error_message"]) if job["error_code"] else None
    return JobOut(
        id=job["id"], user_id=job["user_id"], status=job["status"], stage=job["stage"], progress=job["progress"],
        queue_position=queue_position, prompt=job["prompt"], negative_prompt=job["negative_prompt"],
        model=job["model"], parameters=parameters, priority=job["priority"], submission=job["submission"],
        attempts=job["attempts"], created_at=job["created_at"], queued_at=job["queued_at"],
        started_at=job["started_at"], finished_at=job["finished_at"],
        credits=None if job["credits"] is None else str(job["credits"]), gpu_seconds=job["gpu_seconds"],
        video_url=_download_url(ctx, job, job["output_uri"], "video"),
        thumbnail_url=_download_url(ctx, job, job["thumbnail_uri"], "thumbnail"), error=error,
        storyboard=job.get("storyboard") if isinstance(job.get("storyboard"), dict) else None,
        transcript=job.get("transcript"))


def visible_job(ctx: ApiContext, principal: Principal, job_id: int) -> dict[str, Any]:
    job = ctx.store.reads.get(job_id)
    if not principal.reads_everything and job["user_id"] != principal.user_id:
        raise JobNotFoundError(f"job {job_id} does not exist")
    return job


def _idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not raw.strip() or len(raw) > MAX_IDEMPOTENCY_KEY or not raw.isprintable():
        raise ValidationError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                              code="invalid_idempotency_key")
    return raw


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut,
             responses={200: {"description": "Same Idempotency-Key as an earlier submission: that job."},
                        402: {"description": "The balance does not cover the job's price."},
                        422: {"description": "The request is invalid; the job is stored as `rejected`."},
                        429: {"description": "Rate limit, or too many active jobs."}})
def submit(body: JobCreate, principal: Caller, ctx: Context,
           idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> Any:
    """Submit a generation request. Its price in credits is reserved from the balance at once and
    given back if the job ends rejected, failed or canceled."""
    # A request with nothing to refuse never gets here: api.fast_path answers it in one trip.
    return _submit(body, principal, ctx, idempotency_key)


def _submit(body: JobCreate, principal: Principal, ctx: ApiContext, idempotency_key: str | None) -> Any:
    require_write(principal)
    if body.priority != 0 and principal.role != "admin":
        raise PermissionDeniedError("only an admin may set a job's priority", code="admin_only")
    if body.callback_url is not None:
        check_callback_url(body.callback_url, allow_private=ctx.settings.webhook_allow_private)
        if not ctx.users.has_webhook_secret(principal.user_id):
            raise ValidationError("a callback_url needs a webhook secret to sign its calls: create one with "
                                  "POST /api/v1/me/webhook-secret", code="no_webhook_secret")
    if body.audio_prompt_key is not None:
        check_owned(body.audio_prompt_key, principal.user_id, field="audio_prompt_key", code="audio_not_found")
    music = (body.storyboard or {}).get("music")
    if isinstance(music, dict) and isinstance(music.get("key"), str):
        check_owned(music["key"], principal.user_id, field="storyboard.music.key", code="music_not_found")
    request = JobRequest(user_id=principal.user_id, idempotency_key=_idempotency_key(idempotency_key),
                         **body.model_dump())
    submission = ctx.store.submissions.submit(request, registry=ctx.registry, account=ctx.account_limits)
    if submission.status == "rejected":
        logger.info("job rejected: %s", submission.error_code,
                    extra={"job_id": submission.job_id, "user_id": principal.user_id})
        return JSONResponse(error_body(submission.error_code or "invalid_request", submission.error_message or "",
                                       job_id=submission.job_id), status_code=422)
    logger.info("job submitted" if submission.created else "job resubmitted with the same Idempotency-Key",
                extra={"job_id": submission.job_id, "user_id": principal.user_id})
    out = job_out(ctx, *ctx.store.pages.with_queue_position(submission.job_id))
    return out if submission.created else JSONResponse(out.model_dump(mode="json"), status_code=200)


@router.post("/quote", response_model=QuoteOut)
def quote(body: JobDraft, principal: Caller, ctx: Context) -> QuoteOut:
    """A dry run of a submission: the price, and whether the balance covers it, or the first problem
    with the request (its message, and the field at fault). Always 200; nothing is stored or reserved."""
    balance = Decimal(ctx.users.get(principal.user_id)["credit_balance"])
    draft = body.model_dump()
    try:
        if draft.get("audio_prompt_key") is not None:
            check_owned(draft["audio_prompt_key"], principal.user_id, field="audio_prompt_key", code="audio_not_found")
        checked = validate_any(draft, ctx.registry)  # a clip, a film or a spoken prompt, as submission does
    except ValidationError as problem:
        return QuoteOut(valid=False, error=ProblemOut(code=problem.code, message=problem.message,
                                                      field=problem.field),
                        request=None, credits=None, balance=str(balance), missing=None)
    request = checked.parameters()
    del request["credits"]
    if not given(draft, "seed"):
        request["seed"] = None
    missing = checked.credits - balance
    return QuoteOut(valid=True, error=None, request=request, credits=str(checked.credits), balance=str(balance),
                    missing=str(missing) if missing > 0 else None)


@router.get("", response_model=JobPage)
def list_jobs(
    principal: Caller, ctx: Context,
    status_: Annotated[Status | None, Query(alias="status")] = None,  # type: ignore[valid-type]
    model: Annotated[str | None, Query(max_length=100)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    user_id: Annotated[str | None, Query(max_length=64, description="staff only")] = None,
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """Newest first. A user lists their own jobs; staff list everyone's (or one user's with `user_id`)."""
    if user_id is not None and not principal.reads_everything and user_id != principal.user_id:
        raise PermissionDeniedError("listing another user's jobs needs the admin or support role",
                                    code="staff_only")
    owner = user_id if principal.reads_everything else principal.user_id
    rows = ctx.store.pages.page(user_id=owner, status=status_, model=model, created_from=created_from,
                                created_to=created_to, before_id=int(cursor) if cursor else None, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(items=[job_out(ctx, row) for row in rows], next_cursor=str(rows[-1]["id"]) if more else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: int, principal: Caller, ctx: Context) -> JobOut:
    # A read with nothing to refuse never gets here: api.fast_path answers it in one trip.
    return _get_job(job_id, principal, ctx)


def _get_job(job_id: int, principal: Principal, ctx: ApiContext) -> JobOut:
    job, position = ctx.store.pages.with_queue_position(job_id)
    if not principal.reads_everything and job["user_id"] != principal.user_id:
        raise JobNotFoundError(f"job {job_id} does not exist")
    return job_out(ctx, job, position)


@router.get("/{job_id}/events", response_model=list[JobEventOut])
def job_events(job_id: int, principal: Caller, ctx: Context) -> list[JobEventOut]:
    """The job's audit trail, oldest first."""
    visible_job(ctx, principal, job_id)
    return [JobEventOut(**event) for event in ctx.store.reads.events(job_id)]


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel(job_id: int, principal: Caller, ctx: Context) -> JobOut:
    visible_job(ctx, principal, job_id)
    require_write(principal)
    ctx.store.operator.cancel(job_id)
    logger.info("job canceled", extra={"job_id": job_id, "user_id": principal.user_id})
    return job_out(ctx, ctx.store.reads.get(job_id))


@router.post("/{job_id}/retry", response_model=JobOut)
def retry(job_id: int, principal: Caller, ctx: Context) -> JobOut:
    """Resubmit a failed or canceled job (admin: any job; a user: their own). Reserves its price again."""
    visible_job(ctx, principal, job_id)
    require_write(principal)
    ctx.store.operator.retry(job_id, account=ctx.account_limits)
    logger.info("job resubmitted (retry)", extra={"job_id": job_id, "user_id": principal.user_id})
    return job_out(ctx, *ctx.store.pages.with_queue_position(job_id))


def _snapshot(job: dict[str, Any]) -> dict[str, Any]:
    return {"id": job["id"], "status": job["status"], "stage": job["stage"], "progress": job["progress"],
            "error_code": job["error_code"], "error_message": job["error_message"]}


@router.get("/{job_id}/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: job` with status, stage and progress at each change; "
                                            "the stream ends after a final status."}})
async def stream(job_id: int, request: Request, principal: Caller, ctx: Context) -> StreamingResponse:
    """Live progress as Server-Sent Events, closing once the job reaches a final status."""
    first = await run_in_threadpool(visible_job, ctx, principal, job_id)

    async def events():
        last, job, quiet_since = None, first, time.monotonic()
        while True:
            snapshot = _snapshot(job)
            if snapshot != last:
                yield f"event: job\ndata: {json.dumps(snapshot)}\n\n"
                last, quiet_since = snapshot, time.monotonic()
            elif time.monotonic() - quiet_since > STREAM_KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if job["status"] in TERMINAL_STATUSES or await request.is_disconnected():
                return
            await asyncio.sleep(STREAM_POLL_S)
            job = await run_in_threadpool(ctx.store.reads.get, job_id)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _download(ctx: ApiContext, principal: Principal, job_id: int, column: str, what: str):
    job = visible_job(ctx, principal, job_id)
    if job["status"] != "succeeded" or not job[column]:
        raise JobNotFoundError(f"job {job_id} has no {what} (it is {job['status']})", code="no_output")
    uri = job[column]
    if ctx.settings.storage_backend == "s3":
        return RedirectResponse(ctx.storage.presigned_url(job_key(job_id, uri.rsplit("/", 1)[-1]),
                                                          ctx.settings.presign_expiry_s), status_code=307)
    path = Path(unquote(urlsplit(uri).path)).resolve()
    if not path.is_relative_to(Path(ctx.settings.storage_root).resolve()) or not path.is_file():
        # A row may be written by anyone with database access: serve files of the bucket only.
        raise JobNotFoundError(f"job {job_id}'s {what} is not in the storage", code="no_output")
    return FileResponse(path, filename=f"job-{job_id}-{path.name}")


@router.get("/{job_id}/video", responses={200: {"content": {"video/mp4": {}}}, 307: {"description": "S3 link"}})
def download_video(job_id: int, principal: Viewer, ctx: Context):
    return _download(ctx, principal, job_id, "output_uri", "video")


@router.get("/{job_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}, 307: {"description": "S3 link"}})
def download_thumbnail(job_id: int, principal: Viewer, ctx: Context):
    return _download(ctx, principal, job_id, "thumbnail_uri", "thumbnail")


@router.get("/{job_id}/files/{name}",
            responses={200: {"content": {"text/vtt": {}, "application/x-subrip": {}, "image/png": {}}},
                       307: {"description": "S3 link"}, 404: {"description": "No such job, file or name."}})
def download_file(job_id: int, name: str, principal: Viewer, ctx: Context):
    """A film's subtitles (``subtitles.srt``, ``subtitles.vtt``) or a scene's thumbnail (``scene_01.png``…)."""
    job = visible_job(ctx, principal, job_id)
    if not OUTPUT_FILES.fullmatch(name):
        raise JobNotFoundError(f"{name!r} is not a file a job has: subtitles.srt, subtitles.vtt or scene_NN.png",
                               code="no_output")
    if job["status"] != "succeeded":
        raise JobNotFoundError(f"job {job_id} has no {name} (it is {job['status']})", code="no_output")
    key = job_key(job_id, name)
    if not ctx.storage.exists(key):  # a clip, a film without subtitles, a scene it does not have
        raise JobNotFoundError(f"job {job_id} has no {name}", code="no_output")
    media_type = OUTPUT_TYPES[Path(name).suffix]
    disposition = {"Content-Disposition": f'attachment; filename="job-{job_id}-{name}"'}
    if ctx.settings.storage_backend == "s3":
        if name.endswith(".png"):
            return RedirectResponse(ctx.storage.presigned_url(key, ctx.settings.presign_expiry_s), status_code=307)
        # Subtitles come through the API, not as a link to the bucket: a player's <track> loads only
        # same-origin files (or CORS ones), and the files are a few KiB.
        return Response(ctx.storage.read_bytes(key), media_type=media_type, headers=disposition)
    path = Path(unquote(urlsplit(ctx.storage.uri_for(key)).path))
    return FileResponse(path, media_type=media_type, filename=f"job-{job_id}-{name}")
