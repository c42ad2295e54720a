"""api.fast_path hands every request it does not answer to the app exactly as it came: the same ASGI
messages in the same order (the body it read, replayed), then the live ``receive``. Requests it
answers are covered over real HTTP in test_jobs_api.py (one transaction, the same answer as the
routes') and test_metrics.py (labelled with the routes' templates)."""

from __future__ import annotations

import asyncio
from typing import Any

from api.fast_path import SUBMIT_PATH, OneTripRoutes


class Inner:
    """The app behind the middleware: records the messages it reads until the body ends."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    async def __call__(self, scope, receive, send) -> None:
        read = []
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        self.calls.append((scope, read))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope_for(method: str = "POST", path: str = SUBMIT_PATH, content_type: bytes = b"application/json",
              key: bytes | None = b"vg_0123456789ab_" + b"A" * 32) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"content-type", content_type)]
    if key is not None:
        headers.append((b"x-api-key", key))
    return {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}


def run(scope: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[Inner, list[dict[str, Any]], list[int]]:
    inner = Inner()
    middleware = OneTripRoutes(inner, context=None, submit_route=None, read_route=None)  # no database here
    pending = list(messages)
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    asyncio.run(middleware(scope, receive, send))
    return inner, pending, sent


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]


def test_a_body_that_is_not_json_reaches_the_app_as_it_was_sent_in_its_chunks():
    messages = chunks(b'{"prompt": "a fox", ', b'"width": 64, ', b"not json")
    inner, left, status = run(scope_for(), messages)
    assert status == [299]
    assert inner.calls[0][1] == messages and left == []


def test_a_valid_body_without_credentials_reaches_the_app_unchanged():
    messages = chunks(b'{"prompt": "a fox",', b' "width": 64}')
    inner, _, status = run(scope_for(key=None), messages)
    assert status == [299] and inner.calls[0][1] == messages


def test_a_body_the_job_schema_refuses_reaches_the_app_unchanged():
    messages = chunks(b'{"prompt": "a fox", "width": "64", "colour": "red"}')
    inner, _, status = run(scope_for(), messages)
    assert status == [299] and inner.calls[0][1] == messages


def test_a_client_that_leaves_mid_body_reaches_the_app_with_what_it_sent_and_the_disconnect():
    messages = [{"type": "http.request", "body": b'{"prompt": ', "more_body": True}, {"type": "http.disconnect"}]
    inner, _, _ = run(scope_for(), messages)
    assert inner.calls[0][1] == messages


def test_other_routes_methods_and_content_types_reach_the_app_unchanged():
    for scope in (scope_for(path="/api/v1/jobs/quote"), scope_for(method="GET"),
                  scope_for(content_type=b"text/plain"), scope_for(path=SUBMIT_PATH + "/"),
                  scope_for(method="GET", path=SUBMIT_PATH + "/12/events"),
                  scope_for(method="GET", path=SUBMIT_PATH + "/012"), scope_for(method="PUT", path=SUBMIT_PATH + "/12"),
                  scope_for(method="GET", path=SUBMIT_PATH + "/12", key=None)):
        messages = chunks(b'{"prompt": "a fox"}')
        inner, left, status = run(scope, messages)
        assert status == [299] and inner.calls[0][1] == messages and left == []
