"""One error shape for every failure: ``{"error": {"code", "message", ...}}`` with the right status.

The core raises :mod:`videogen.errors` types; this module is the only place that knows their HTTP
status. Request-shape errors (malformed JSON, wrong types, unknown fields) are rewritten from
pydantic's list into one readable sentence naming each field. Nothing here echoes a secret: the
messages of the core never contain one, and rejected inputs are not quoted for secret fields.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from videogen import errors
from web.pages import error_html, error_page, is_page_request

logger = logging.getLogger("videogen.api")

STATUS_BY_ERROR: list[tuple[type[errors.VideogenError], int]] = [
    (errors.AuthenticationError, 401),
    (errors.InsufficientCreditsError, 402),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.InvalidTransitionError, 409),
    (errors.ValidationError, 422),
    (errors.RateLimitedError, 429),
]
SECRET_FIELDS = frozenset({"password", "refresh_token", "key", "secret", "webhook_secret"})


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def send_json_error(send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer with an error body from ASGI middleware (outside FastAPI's handlers)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class WatchedSend:
    """An ASGI ``send`` that remembers the response's status once it has started (middlewares need to
    know whether they may still answer, and with what status the app answered)."""

    def __init__(self, send) -> None:
        self.send = send
        self.status: int | None = None

    @property
    def started(self) -> bool:
        return self.status is not None

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def status_for(exc: errors.VideogenError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    problems = []
    code = "invalid_body"
    for item in exc.errors():
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        where = ".".join(location) or "body"
        kind = item.get("type", "")
        if kind == "json_invalid":
            return "malformed_json", f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')})"
        if kind == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif kind == "missing":
            problems.append(f"{where}: required")
        else:
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        if item.get("loc", ("",))[0] in ("query", "path", "header"):
            code = "invalid_parameter"
    return code, "; ".join(problems) or "the request is invalid"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.VideogenError)
    async def videogen_error(request: Request, exc: errors.VideogenError) -> JSONResponse:
        status = status_for(exc)
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, errors.InsufficientCreditsError):
            extra = {"required": str(exc.required), "balance": str(exc.balance), "missing": str(exc.missing)}
        if isinstance(exc, errors.RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after_s)
            extra = {"retry_after_s": exc.retry_after_s}
        if isinstance(exc, errors.ValidationError) and exc.field:
            extra = {"field": exc.field}
        if isinstance(exc, errors.AuthenticationError):
            headers["WWW-Authenticate"] = "Bearer"
        if status == 500:
            logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
            return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
        return JSONResponse(error_body(exc.code, exc.message, **extra), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_page_request(request.url.path):  # a page address with a malformed part (/videos/abc)
            return error_page(request, 404)
        code, message = _describe_validation(exc)
        return JSONResponse(error_body(code, message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_page_request(request.url.path):
            return error_page(request, exc.status_code)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(error_body(codes.get(exc.status_code, "http_error"), message),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))


class UnhandledErrors:
    """The last line of defence, as ASGI middleware: any exception a route did not turn into an answer
    becomes a JSON error *without* being re-raised, so neither Starlette nor uvicorn logs its
    traceback (a database error's text can quote row values). Logged: its type and the route only.

    - a connection the database dropped (a restart, a failover): 503 with Retry-After, the pool has
      discarded it and the next request gets a fresh one;
    - text with a NUL character that reached PostgreSQL (which refuses them) from a path, a query
      parameter or a field without its own check: 422;
    - anything else: 500 ``internal_error``.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - every failure gets an answer
            status, body, headers = _answer_for(exc)
            logger.error("%s on %s %s answered %d", type(exc).__name__, scope.get("method"), scope.get("path"), status)
            if watched.started:  # the response is half sent (a stream): nothing more can be said
                return
            if is_page_request(scope.get("path", "")):
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"text/html; charset=utf-8")]})
                await send({"type": "http.response.body", "body": error_html(status)})
                return
            await send_json_error(send, status, body, headers)


def _answer_for(exc: Exception) -> tuple[int, dict, list[tuple[bytes, bytes]]]:
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return 503, error_body("database_unavailable", "the database connection was lost; retry"), [
            (b"retry-after", b"1")]
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return 503, error_body("database_unavailable", "the database is unavailable; retry"), [(b"retry-after", b"5")]
    causes = [exc, getattr(exc, "orig", None), exc.__cause__]
    if any(isinstance(cause, ValueError) and "NUL" in str(cause) for cause in causes):
        return 422, error_body("control_characters", "text must not contain NUL characters"), []
    return 500, error_body("internal_error", "internal error"), []
