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
  resolves to must be public (an IPv6 address carrying an IPv4 one is judged by that one), unless
  ``VIDEOGEN_WEBHOOK_ALLOW_PRIVATE`` (an operator's setting) says otherwise; checked at submission
  and again before each attempt, and the attempt connects to the address that was checked (no
  second lookup to rebind), without following redirects.
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
# The same for every attempt of one delivery: a receiver that saw it already can drop the repeat
# (delivery is at least once: a sensor that dies between the POST and its commit sends it again).
DELIVERY_HEADER = "X-Videogen-Delivery"
REPLAY_WINDOW_S = 300


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnresolvableHostError(ValidationError):
    """The callback's host does not resolve (now): refused at submission, retried at delivery."""

    code = "callback_url_unresolvable"


def _addresses(host: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnresolvableHostError(f"callback_url host {host!r} does not resolve") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, compatible), if any: such an
    address reaches that IPv4 host, so it is judged by it."""
    if address.version != 6:
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in NAT64 or int(address) >> 32 == 0:  # 64:ff9b::a.b.c.d, ::a.b.c.d
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    inner = _embedded_ipv4(address)
    return address.is_global and (inner is None or inner.is_global)


def check_callback_url(raw: Any, *, allow_private: bool) -> str:
    """The URL if a webhook may be sent there; a ValidationError naming the problem otherwise."""
    return _checked(raw, allow_private=allow_private)[0]


def _checked(raw: Any, *, allow_private: bool) -> tuple[str, list[Address]]:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URL or not raw.isprintable():
        raise ValidationError(f"callback_url must be an http(s) URL of at most {MAX_URL} printable characters",
                              code="invalid_callback_url")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("callback_url must be an http:// or https:// URL with a host", code="invalid_callback_url")
    if parts.username or parts.password:
        raise ValidationError("callback_url must not contain credentials", code="invalid_callback_url")
    addresses = _addresses(parts.hostname)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise ValidationError(
                    f"callback_url resolves to {address}, a loopback, link-local or private address; webhooks "
                    "go to public addresses only", code="callback_url_not_public")
    return raw, addresses


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


Post = Callable[[str, bytes, dict[str, str], "Address | None"], int]


def http_post(url: str, body: bytes, headers: dict[str, str], address: Address | None = None) -> int:
    """POST to ``url`` connecting to ``address`` (the one that was checked: a second DNS answer cannot
    send the request elsewhere), the TLS name and Host header still the URL's host. Only the status
    line is read: a receiver that drips its body cannot hold the sensor."""
    import httpx

    parts = urlsplit(url)
    target, extensions = url, {}
    if address is not None:
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = host + (f":{parts.port}" if parts.port else "")
        target = parts._replace(netloc=netloc).geturl()
        headers = {**headers, "Host": parts.netloc}
        if parts.scheme == "https":
            extensions["sni_hostname"] = parts.hostname
    with httpx.Client(timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=False) as client:
        with client.stream("POST", target, content=body, headers=headers, extensions=extensions) as response:
            return response.status_code


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
            url, addresses = _checked(delivery["url"], allow_private=allow_private)
            body = delivery["payload"].encode()
            stamp = int(now())
            status_code = post(url, body, {"Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp),
                                           SIGNATURE_HEADER: sign(delivery["webhook_secret"], stamp, body),
                                           DELIVERY_HEADER: str(delivery["id"]), "User-Agent": "videogen-webhooks/1"},
                               addresses[0])
            if not 200 <= status_code < 300:
                error = f"the receiver answered HTTP {status_code}"
        except UnresolvableHostError as exc:  # DNS may answer again later
            error = exc.message
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
