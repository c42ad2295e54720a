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


class BodySizeLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send) -> None:
        await send_json_error(send, 413, error_body("body_too_large", BodyTooLarge(self.max_bytes).detail),
                              [(b"connection", b"close")])

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        watched = WatchedSend(send)
        try:
            await self.app(scope, counting_receive, watched)
        except BodyTooLarge:
            if not watched.started:
                await self._reject(send)
