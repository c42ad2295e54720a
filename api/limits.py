"""Request body limit (64 KiB → 413) as ASGI middleware: checked on Content-Length before anything is
read, and on the bytes actually received for a chunked body, so an oversized body is never buffered."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from api.errors import WatchedSend, error_body, send_json_error

MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-body; an HTTPException so that FastAPI's body reader passes it on
    as it is (it turns other exceptions into a 400) and the app's handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes // 1024} KiB")


# Routes that take a file: their own, larger limit (an audio prompt or a music bed).
UPLOAD_PATH = "/api/v1/uploads"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class BodySizeLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, upload_max_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.app, self.max_bytes, self.upload_max_bytes = app, max_bytes, upload_max_bytes

    async def _reject(self, send, limit: int) -> None:
        detail = BodyTooLarge(limit).detail if limit < 1024 * 1024 else (
            f"the request body is larger than {limit // 1024 // 1024} MiB")
        await send_json_error(send, 413, error_body("body_too_large", detail), [(b"connection", b"close")])

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_max_bytes if scope.get("path") == UPLOAD_PATH else self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await self._reject(send, limit)
                    return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        watched = WatchedSend(send)
        try:
            await self.app(scope, counting_receive, watched)
        except BodyTooLarge:
            if not watched.started:
                await self._reject(send, limit)
