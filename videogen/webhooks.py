"""Webhooks: when a job with a ``callback_url`` reaches a final status, its owner's URL receives a
signed POST.

* **Created with the status change.** :func:`enqueue_for_jobs` runs inside the transition's
  transaction (``videogen.lifecycle.transitions``), so a final status without its delivery row
  cannot exist, whichever process made the change.
* **Delivered by Dagster**, not by the API: the ``webhook_deliveries_sensor`` calls
  :func:`deliver_due`, so deliveries survive restarts of any API process. Each attempt is a row of
  ``webhook_attempts``; failures are retried with backoff (:data:`RETRY_DELAYS_S`), then the
  delivery is ``failed``.
* **Signed**: ``X-Videogen-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` and
  ``X-Videogen-Timestamp: <unix seconds>``; a receiver recomputes the HMAC and refuses timestamps
  older than a few minutes (replay). :func:`verify_signature` is the reference check.
* **No server-side request forgery**: a callback URL must be http(s) and every address its host
  resolves to must be public, unless ``VIDEOGEN_WEBHOOK_ALLOW_PRIVATE`` (an operator's setting) says
  otherwise; checked at submission and again before each attempt (DNS may change in between), and
  redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from videogen.db.schema import jobs, users, webhook_attempts, webhook_deliveries
from videogen.errors import ValidationError

RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0, 1800.0)  # then the delivery is failed (6 attempts in all)
TIMEOUT_S = 10.0
MAX_URL = 2048
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Videogen-Signature", "X-Videogen-Timestamp"
REPLAY_WINDOW_S = 300


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValidationError(f"callback_url host {host!r} does not resolve", code="invalid_callback_url") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_callback_url(raw: Any, *, allow_private: bool) -> str:
    """The URL if a webhook may be sent there; a ValidationError naming the problem otherwise."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URL or not raw.isprintable():
        raise ValidationError(f"callback_url must be an http(s) URL of at most {MAX_URL} printable characters",
                              code="invalid_callback_url")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("callback_url must be an http:// or https:// URL with a host", code="invalid_callback_url")
    if parts.username or parts.password:
        raise ValidationError("callback_url must not contain credentials", code="invalid_callback_url")
    if not allow_private:
        for address in _addresses(parts.hostname):
            if not address.is_global:
                raise ValidationError(
                    f"callback_url resolves to {address}, a loopback, link-local or private address; webhooks "
                    "go to public addresses only", code="callback_url_not_public")
    return raw


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, signature: str, timestamp: str, *, now: float | None = None) -> bool:
    """What a receiver does: a fresh timestamp and a matching HMAC (compared in constant time)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - sent) > REPLAY_WINDOW_S:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def payload_for(job: sa.RowMapping) -> dict[str, Any]:
    """What the receiver gets: the job's final state, never its prompt (it may be sensitive)."""
    return {"event": f"job.{job['status']}", "job": {
        "id": job["id"], "status": job["status"], "stage": job["stage"], "model": job["model"],
        "created_at": job["created_at"].isoformat(), "finished_at": job["finished_at"].isoformat()
        if job["finished_at"] else None, "credits": None if job["credits"] is None else str(job["credits"]),
        "error_code": job["error_code"], "error_message": job["error_message"],
        "video_path": f"/api/v1/jobs/{job['id']}/video" if job["status"] == "succeeded" else None}}


def enqueue_for_jobs(conn: sa.Connection, job_ids: Sequence[int]) -> int:
    """A delivery for each of these jobs that has a callback URL (called with its final status)."""
    if not job_ids:
        return 0
    rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(list(job_ids)), jobs.c.callback_url.isnot(None))
                        ).mappings().all()
    for job in rows:
        payload = payload_for(job)
        conn.execute(webhook_deliveries.insert().values(
            job_id=job["id"], user_id=job["user_id"], url=job["callback_url"], event=payload["event"],
            payload=json.dumps(payload, sort_keys=True)))
    return len(rows)


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    job_id: int
    attempt: int
    state: str  # delivered, pending (will retry) or failed
    status_code: int | None
    error: str | None


Post = Callable[[str, bytes, dict[str, str]], int]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx

    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers).status_code


def deliver_due(engine: sa.Engine, *, allow_private: bool, limit: int = 20, post: Post = http_post,
                now: Callable[[], float] = time.time) -> list[AttemptResult]:
    """Attempt every delivery that is due (each locked while it is attempted, so two sensors never
    send the same one twice at once). 2xx = delivered; anything else is retried after a backoff."""
    results = []
    for _ in range(limit):
        with engine.begin() as conn:
            delivery = conn.execute(
                sa.select(webhook_deliveries, users.c.webhook_secret)
                .join(users, users.c.id == webhook_deliveries.c.user_id, isouter=True)
                .where(webhook_deliveries.c.state == "pending", webhook_deliveries.c.next_attempt_at <= sa.func.now())
                .order_by(webhook_deliveries.c.next_attempt_at).limit(1)
                .with_for_update(of=webhook_deliveries, skip_locked=True)
            ).mappings().first()
            if delivery is None:
                break
            results.append(_attempt(conn, delivery, allow_private=allow_private, post=post, now=now))
    return results


def _attempt(conn: sa.Connection, delivery: sa.RowMapping, *, allow_private: bool, post: Post,
             now: Callable[[], float]) -> AttemptResult:
    attempt = delivery["attempts"] + 1
    status_code, error, permanent = None, None, False
    started = time.monotonic()
    if not delivery["webhook_secret"]:
        error = "the account has no webhook secret (deleted or never created)"
    else:
        try:
            url = check_callback_url(delivery["url"], allow_private=allow_private)
            body = delivery["payload"].encode()
            stamp = int(now())
            status_code = post(url, body, {"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp),
                                           SIGNATURE_HEADER: sign(delivery["webhook_secret"], stamp, body),
                                           "User-Agent": "videogen-webhooks/1"})
            if not 200 <= status_code < 300:
                error = f"the receiver answered HTTP {status_code}"
        except ValidationError as exc:  # the URL is not allowed (any more): retrying will not help
            error, permanent = exc.message, True
        except Exception as exc:  # noqa: BLE001 - any network failure is retried
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
    duration = time.monotonic() - started
    conn.execute(webhook_attempts.insert().values(delivery_id=delivery["id"], attempt=attempt,
                                                  status_code=status_code, error=error, duration_s=duration))
    if error is None:
        state, values = "delivered", {"delivered_at": sa.func.now(), "last_error": None}
    elif attempt <= len(RETRY_DELAYS_S) and delivery["webhook_secret"] and not permanent:
        state = "pending"
        values = {"next_attempt_at": datetime.now(UTC) + timedelta(seconds=RETRY_DELAYS_S[attempt - 1]),
                  "last_error": error}
    else:
        state, values = "failed", {"last_error": error}
    conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.id == delivery["id"])
                 .values(state=state, attempts=attempt, **values))
    return AttemptResult(delivery["id"], delivery["job_id"], attempt, state, status_code, error)
