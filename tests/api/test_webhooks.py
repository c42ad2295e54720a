"""Webhooks: the URL policy (no requests to private addresses), signatures, and deliveries made from
the jobs' final statuses to a real local HTTP receiver, with every attempt recorded."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.api.test_auth import error_of
from tests.api.test_jobs_api import TINY
from videogen.accounts.users import Users
from videogen.db.schema import webhook_attempts, webhook_deliveries
from videogen.errors import ValidationError
from videogen.lifecycle import JobStore
from videogen.webhooks import (DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, check_callback_url, deliver_due, sign,
                               verify_signature)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers the next queued status."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"body": body, "headers": dict(self.headers)})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/videogen"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("url, shown", [("http://127.0.0.1:9000/hook", "127.0.0.1"),
                                        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
                                        ("https://10.0.0.1/hook", "10.0.0.1"), ("http://[::1]/hook", "::1"),
                                        ("http://localhost/hook", None), ("http://2130706433/hook", None),
                                        ("http://0177.0.0.1/hook", None), ("http://[::ffff:127.0.0.1]/", None),
                                        ("http://[64:ff9b::a9fe:a9fe]/", None), ("http://[2002:a9fe:a9fe::]/", None),
                                        ("http://[::127.0.0.1]/", None)])
def test_callback_urls_to_private_addresses_are_refused(url, shown):
    with pytest.raises(ValidationError) as refused:
        check_callback_url(url, allow_private=False)
    assert refused.value.code == "callback_url_not_public"
    if shown:
        assert refused.value.message == (f"callback_url resolves to {shown}, a loopback, link-local or private "
                                         "address; webhooks go to public addresses only")
    assert check_callback_url(url, allow_private=True) == url


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/x", "callback_url must be an http:// or https:// URL with a host"),
    ("https://user:pw@example.com/x", "callback_url must not contain credentials"),
    ("https://exa\u0000mple.com/", "callback_url must be an http(s) URL of at most 2048 printable characters"),
])
def test_malformed_callback_urls_are_refused(url, message):
    with pytest.raises(ValidationError) as refused:
        check_callback_url(url, allow_private=True)
    assert refused.value.message == message


def test_a_signature_checks_body_secret_and_freshness():
    body, stamp = b'{"event": "job.succeeded"}', int(time.time())
    signature = sign("whsec_a", stamp, body)
    assert verify_signature("whsec_a", body, signature, str(stamp))
    assert not verify_signature("whsec_a", body + b" ", signature, str(stamp))
    assert not verify_signature("whsec_b", body, signature, str(stamp))
    old = stamp - 3600
    assert not verify_signature("whsec_a", body, sign("whsec_a", old, body), str(old))  # a replay


def test_the_api_refuses_private_callbacks_and_callbacks_without_a_secret(api, user):
    with api.client(**user.headers) as http:
        for host in ("127.0.0.1", "169.254.169.254", "10.0.0.1"):
            assert error_of(http.post("/api/v1/jobs", json={**TINY, "callback_url": f"http://{host}/hook"})) == (
                422, "callback_url_not_public", f"callback_url resolves to {host}, a loopback, link-local or "
                                                "private address; webhooks go to public addresses only")
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "callback_url": "http://93.184.215.14/hook"})) == (
            422, "no_webhook_secret", "a callback_url needs a webhook secret to sign its calls: create one with "
                                      "POST /api/v1/me/webhook-secret")
        created = http.post("/api/v1/me/webhook-secret")
        assert created.status_code == 201 and created.json()["webhook_secret"].startswith("whsec_")
        accepted = http.post("/api/v1/jobs", json={**TINY, "callback_url": "http://93.184.215.14/hook"})
        assert accepted.status_code == 201
    assert created.json()["webhook_secret"] not in api.log_text()


def test_a_final_status_is_delivered_signed_and_failures_are_retried(api, user):
    secret = Users(api.engine).rotate_webhook_secret(user.id)
    store = JobStore(api.engine)
    with Receiver() as receiver:
        with api.client(**user.headers) as http:
            job_id = http.post("/api/v1/jobs", json=TINY).json()["id"]
        with api.engine.begin() as conn:  # the API refuses loopback; VIDEOGEN_WEBHOOK_ALLOW_PRIVATE allows it
            conn.execute(sa.text("UPDATE jobs SET callback_url = :url WHERE id = :id"),
                         {"url": receiver.url, "id": job_id})
        receiver.statuses = [500]
        store.operator.cancel(job_id)  # the final status creates the delivery, in its transaction
        first = [r for r in deliver_due(api.engine, allow_private=True) if r.job_id == job_id]
        assert [(r.attempt, r.state, r.status_code, r.error) for r in first] == [
            (1, "pending", 500, "the receiver answered HTTP 500")]
        assert [r for r in deliver_due(api.engine, allow_private=True) if r.job_id == job_id] == []  # backoff
        with api.engine.begin() as conn:
            conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.job_id == job_id)
                         .values(next_attempt_at=sa.func.now()))
        second = [r for r in deliver_due(api.engine, allow_private=True) if r.job_id == job_id]
        assert [(r.attempt, r.state, r.status_code) for r in second] == [(2, "delivered", 204)]
        assert [r for r in deliver_due(api.engine, allow_private=True) if r.job_id == job_id] == []  # delivered
    sent = receiver.received[-1]
    body = json.loads(sent["body"])
    assert body["event"] == "job.canceled" and body["job"]["id"] == job_id and "prompt" not in body["job"]
    assert verify_signature(secret, sent["body"], sent["headers"][SIGNATURE_HEADER], sent["headers"][TIMESTAMP_HEADER])
    first_id = receiver.received[0]["headers"][DELIVERY_HEADER]
    assert first_id == sent["headers"][DELIVERY_HEADER]  # both attempts: one delivery id to deduplicate on
    with api.engine.connect() as conn:
        attempts = conn.execute(sa.select(webhook_attempts.c.attempt, webhook_attempts.c.status_code)
                                .join(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id)
                                .order_by(webhook_attempts.c.id)).all()
    assert [tuple(a) for a in attempts] == [(1, 500), (2, 204)]


def test_a_delivery_to_an_address_that_became_private_fails_without_retrying(api, user):
    Users(api.engine).rotate_webhook_secret(user.id)
    with api.client(**user.headers) as http:
        job_id = http.post("/api/v1/jobs", json=TINY).json()["id"]
    with api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET callback_url = 'http://10.0.0.1/hook' WHERE id = :id"), {"id": job_id})
    JobStore(api.engine).operator.cancel(job_id)
    results = [r for r in deliver_due(api.engine, allow_private=False) if r.job_id == job_id]
    assert [(r.state, r.error) for r in results] == [("failed", "callback_url resolves to 10.0.0.1, a loopback, "
                                                      "link-local or private address; webhooks go to public "
                                                      "addresses only")]


def test_a_host_that_does_not_resolve_is_retried_at_delivery_and_refused_at_submission(api, user):
    Users(api.engine).rotate_webhook_secret(user.id)
    with api.client(**user.headers) as http:
        refused = http.post("/api/v1/jobs", json={**TINY, "callback_url": "http://no-such-host.invalid/hook"})
        assert error_of(refused) == (422, "callback_url_unresolvable",
                                     "callback_url host 'no-such-host.invalid' does not resolve")
        job_id = http.post("/api/v1/jobs", json=TINY).json()["id"]
    with api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET callback_url = 'http://no-such-host.invalid/hook' WHERE id = :id"),
                     {"id": job_id})
    JobStore(api.engine).operator.cancel(job_id)
    results = [r for r in deliver_due(api.engine, allow_private=False) if r.job_id == job_id]
    assert [(r.state, r.error) for r in results] == [
        ("pending", "callback_url host 'no-such-host.invalid' does not resolve")]
