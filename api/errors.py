"""One error shape for every failure: ``{"error": {"code", "message", ...}}`` with the right status.

The core raises :mod:`videogen.errors` types; this module is the only place that knows their HTTP
status. Request-shape errors (malformed JSON, wrong types, unknown fields) are rewritten from
pydantic's list into one readable sentence naming each field. Nothing here echoes a secret: the
messages of the core never contain one, and rejected inputs are not quoted for secret fields.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from videogen import errors

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
        if isinstance(exc, errors.AuthenticationError):
            headers["WWW-Authenticate"] = "Bearer"
        if status == 500:
            logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
            return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
        return JSONResponse(error_body(exc.code, exc.message, **extra), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _describe_validation(exc)
        return JSONResponse(error_body(code, message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(error_body(codes.get(exc.status_code, "http_error"), message),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: an exception's text may carry a URL with credentials or a user's prompt.
        logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
