"""``POST /api/v1/jobs`` and ``GET /api/v1/jobs/{id}`` answered in one database trip, before FastAPI's
request path.

The routes (:func:`api.routes.jobs.submit`, :func:`api.routes.jobs.get_job`) keep every rule, every
refusal's message and the OpenAPI description. This ASGI middleware answers only the requests that
one statement settles (:class:`videogen.lifecycle.one_trip.OneTripCalls`):

- a submission: credentials that pass :func:`api.deps.presented`, a JSON body that
  :class:`api.schemas.JobCreate` accepts, no callback URL, a well-formed ``Idempotency-Key`` and a
  new job that ``api_submit_job()`` accepts;
- a read: such credentials, an id written as plain digits, and a job ``api_read_job()`` lets them see.

Every other request reaches the app unchanged: the messages this middleware read (a body) are
replayed to it, so the route sees the request exactly as it was sent and answers it as it always did
(a refusal by the function, too: its statement rolled back, and the route counts the request once).

Why: on 2 cores, FastAPI's request path (routing through every route of the API and the web app,
dependency solving, validating the body for the route and again for the choice of path, its
response machinery) was about half of the API's CPU per submission (benchmarks/api_benchmark.py).

It sits inside the app's own middlewares (request metrics, the body-size limit, the error handler),
which see these requests like any other: the metrics label them with the routes' templates.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from api.context import ApiContext
from api.deps import presented
from api.routes.jobs import MAX_JOB_ID, _idempotency_key, _presigns, job_out
from api.schemas import JobCreate
from videogen.errors import ValidationError
from videogen.lifecycle import JobRequest
from videogen.lifecycle.one_trip import Credentials

SUBMIT_PATH = "/api/v1/jobs"
READ_PATH = re.compile(r"/api/v1/jobs/([1-9][0-9]{0,18})")  # plain digits; anything else: the route's parsing
logger = logging.getLogger("videogen.api.jobs")  # the route's: one log of submissions, whichever answered


class Replay:
    """An ASGI ``receive`` that gives back the messages already read, then reads on."""

    def __init__(self, read: list[dict[str, Any]], receive) -> None:
        self.read, self.receive = list(read), receive

    async def __call__(self) -> dict[str, Any]:
        if self.read:
            return self.read.pop(0)
        return await self.receive()


class OneTripRoutes:
    def __init__(self, app, context: ApiContext, submit_route: BaseRoute, read_route: BaseRoute) -> None:
        self.app, self.context = app, context
        self.submit_route, self.read_route = submit_route, read_route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST" and scope["path"] == SUBMIT_PATH:
                await self._submit(scope, receive, send)
                return
            if scope["method"] == "GET" and (found := READ_PATH.fullmatch(scope["path"])):
                await self._read(int(found[1]), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _submit(self, scope, receive, send) -> None:
        headers = Headers(scope=scope)
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            await self.app(scope, receive, send)  # what the route makes of it (a 422), body unread
            return
        messages, body = await _read_body(receive)
        response = None
        if body is not None:
            scope["route"] = self.submit_route  # for the request metrics, also if the answer fails
            response = await self._submission(scope, headers, body)
        if response is None:
            scope.pop("route", None)  # the router sets it
            await self.app(scope, Replay(messages, receive), send)
            return
        await response(scope, receive, send)

    async def _submission(self, scope, headers: Headers, body: bytes) -> Response | None:
        credentials = self._credentials(scope, headers)
        if credentials is None:
            return None
        try:
            job = JobCreate.model_validate(json.loads(body))  # as FastAPI parses and validates the body
        except Exception:  # noqa: BLE001 - not JSON, not a JobCreate, or any doubt: the route answers
            return None
        return await submit_in_one_trip(self.context, credentials, job, headers.get("idempotency-key"))

    def _credentials(self, scope, headers: Headers) -> Credentials | None:
        return presented(self.context, headers.get("authorization"), headers.get("x-api-key"), Request(scope))

    async def _read(self, job_id: int, scope, receive, send) -> None:
        response = None
        if job_id <= MAX_JOB_ID:
            credentials = self._credentials(scope, Headers(scope=scope))
            if credentials is not None:
                scope["route"] = self.read_route  # for the request metrics, also if the answer fails
                response = await read_in_one_trip(self.context, credentials, job_id)
        if response is None:
            scope.pop("route", None)
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


async def read_in_one_trip(ctx: ApiContext, credentials: Credentials, job_id: int) -> Response | None:
    """The job as its caller may see it, or None when the route must answer (a job that is missing
    or someone else's, among other refusals)."""
    done = await ctx.one_trip.read_job(credentials, job_id)
    if done is None:
        return None
    # Presigning may fetch credentials over the network (instance metadata, STS): not on the loop.
    out = (await run_in_threadpool(job_out, ctx, done.job, done.queue_position) if _presigns(ctx, done.job)
           else job_out(ctx, done.job, done.queue_position))
    return Response(out.model_dump_json(), media_type="application/json")


async def submit_in_one_trip(ctx: ApiContext, credentials: Credentials, body: JobCreate,
                             idempotency_key: str | None) -> Response | None:
    """A new job, or None when the route must answer. Callback URLs take the route (their check
    resolves the host name, which must not block the event loop)."""
    if body.callback_url is not None:
        return None
    try:
        key = _idempotency_key(idempotency_key)
    except ValidationError:
        return None
    done = await ctx.one_trip.submit(credentials, JobRequest(user_id="", idempotency_key=key, **body.model_dump()))
    if done is None:
        return None
    logger.info("job submitted", extra={"job_id": done.job["id"], "user_id": done.principal.user_id})
    # Serialized here: FastAPI would validate the JobOut a second time against the response model.
    return Response(job_out(ctx, done.job, done.queue_position).model_dump_json(), status_code=201,
                    media_type="application/json")


async def _read_body(receive) -> tuple[list[dict[str, Any]], bytes | None]:
    """Every message of the request's body, and the body (None when the client left before its end)."""
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)
