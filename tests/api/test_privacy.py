"""Account erasure (GDPR) over real HTTP: DELETE /api/v1/users/me and DELETE /api/v1/users/{id}.

The person's data goes (outputs in the storage, prompts, email, password, keys and sessions), their
active jobs are canceled and refunded, and the job statistics still add up afterwards."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.api.conftest import PASSWORD, make_account
from tests.api.test_auth import error_of
from videogen.accounts.erasure import AccountEraser
from videogen.accounts.keys import ApiKeys
from videogen.config import DEFAULT_BUCKET
from videogen.db.schema import (account_erasures, api_keys, credit_ledger, job_events, jobs, refresh_tokens, users,
                                webhook_deliveries)
from videogen.errors import StorageUnavailableError
from videogen.kpi.dates import DayRange
from videogen.kpi.reference import daily_kpis_sql
from videogen.storage.job_outputs import job_key, job_prefix
from videogen.storage.local import LocalObjectStorage

TINY = {"prompt": "my secret birthday surprise for Ana", "width": 64, "height": 64, "num_frames": 9, "steps": 4}
OUTPUTS = ("video.mp4", "thumbnail.png", "metadata.json")


@pytest.fixture(scope="module")
def storage(api) -> LocalObjectStorage:
    """The bucket the server uses: VIDEOGEN_STORAGE_ROOT=<work>/storage, the default bucket."""
    return LocalObjectStorage(root=api.home / "storage", bucket=DEFAULT_BUCKET)


def finished_job(api, storage, tmp_path: Path, user_id: str, *, status: str = "succeeded",
                 created_at: datetime | None = None, prompt: str = "a private prompt", **values) -> int:
    """A job row as a finished run leaves it (outputs in the storage for a succeeded job), and its events."""
    created = created_at or datetime.now(UTC) - timedelta(hours=1)
    with api.engine.begin() as conn:
        job_id = conn.execute(jobs.insert().values(
            user_id=user_id, prompt=prompt, negative_prompt="blurry, " + prompt, status=status,
            created_at=created, queued_at=created + timedelta(seconds=1), started_at=created + timedelta(seconds=2),
            finished_at=created + timedelta(seconds=12), gpu_seconds=9.5, credits=Decimal("0.1475"),
            idempotency_key=f"key-{prompt}", callback_url="https://hooks.example.com/ana",
            error_code=None if status == "succeeded" else "invalid_prompt",
            error_message=None if status == "succeeded" else f"prompt {prompt!r} is not allowed", **values,
        ).returning(jobs.c.id)).scalar_one()
        conn.execute(job_events.insert(), [
            {"job_id": job_id, "status": "pending", "stage": "submit", "message": f"submitted: {prompt}"},
            {"job_id": job_id, "status": status, "stage": "finalize", "message": f"done with {prompt}"}])
    if status == "succeeded":
        for name in OUTPUTS:
            source = tmp_path / f"{job_id}-{name}"
            source.write_bytes(f"{name} of job {job_id}".encode())
            storage.put_file(job_key(job_id, name), source)
        with api.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                output_uri=storage.uri_for(job_key(job_id, "video.mp4")),
                thumbnail_uri=storage.uri_for(job_key(job_id, "thumbnail.png"))))
    return job_id


def log_in(api, email: str) -> dict:
    with api.client() as http:
        response = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def row_of(api, table, **where):
    with api.engine.connect() as conn:
        return conn.execute(sa.select(table).where(*(table.c[k] == v for k, v in where.items()))).mappings().first()


def rows_of(api, table, *conditions):
    with api.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*conditions).order_by(table.c.id)).mappings()]


def test_a_user_erases_their_own_account(api, storage, user, tmp_path):
    other = make_account(api)
    done = finished_job(api, storage, tmp_path, user.id)
    failed = finished_job(api, storage, tmp_path, user.id, status="rejected", prompt="another private prompt")
    others = finished_job(api, storage, tmp_path, other.id)
    session = log_in(api, user.email)
    with api.client(**user.headers) as http:
        pending = http.post("/api/v1/jobs", json=TINY)
        assert pending.status_code == 201, pending.text
        pending_id = pending.json()["id"]
        erased = http.delete("/api/v1/users/me")
    assert erased.status_code == 200, erased.text
    summary = erased.json()
    anonymous = summary.pop("anonymized_user_id")
    assert anonymous.startswith("erased_") and len(anonymous) == len("erased_") + 16
    assert datetime.fromisoformat(summary.pop("erased_at")) > datetime.now(UTC) - timedelta(minutes=1)
    assert summary == {"jobs_anonymized": 3, "jobs_canceled": 1, "objects_deleted": 3, "keys_revoked": 1,
                       "refresh_tokens_revoked": 1}

    # The outputs are gone from the storage; the other user's are still there.
    for job_id in (done, failed, pending_id):
        assert storage.list_prefix(job_prefix(job_id)) == []
    assert storage.list_prefix(job_prefix(others)) == [job_key(others, name) for name in sorted(OUTPUTS)]

    # Nothing is left under the old id; the account lives on, anonymized, under the new one.
    with api.engine.connect() as conn:
        for table in (users, api_keys, refresh_tokens, credit_ledger, jobs):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)
                                .where(table.c.user_id == user.id if table is not users
                                       else table.c.id == user.id)).scalar_one() == 0, table.name
    account = row_of(api, users, id=anonymous)
    assert account["email"] == f"{anonymous}@erased.invalid" and account["password_hash"] is None
    assert account["webhook_secret"] is None and account["deleted_at"] is not None
    assert account["credit_balance"] == Decimal("100")  # the pending job was refunded by its cancellation
    assert [(e["kind"], e["job_id"]) for e in rows_of(api, credit_ledger, credit_ledger.c.user_id == anonymous)] == [
        ("grant", None), ("reserve", pending_id), ("refund", pending_id)]
    erased_jobs = rows_of(api, jobs, jobs.c.user_id == anonymous)
    assert [j["id"] for j in erased_jobs] == sorted([done, failed, pending_id])
    for job in erased_jobs:
        assert (job["prompt"], job["negative_prompt"], job["idempotency_key"], job["callback_url"],
                job["error_message"], job["output_uri"], job["thumbnail_uri"]) == ("", "", None, None, None, None, None)
    assert {j["id"]: (j["status"], j["error_code"]) for j in erased_jobs} == {
        done: ("succeeded", None), failed: ("rejected", "invalid_prompt"), pending_id: ("canceled", "canceled")}
    events = rows_of(api, job_events, job_events.c.job_id.in_([done, failed, pending_id]))
    assert events and all(e["message"] is None for e in events)
    assert [e["status"] for e in events if e["job_id"] == pending_id] == ["pending", "canceled"]
    assert rows_of(api, webhook_deliveries, webhook_deliveries.c.job_id.in_([done, failed, pending_id])) == []
    assert all(k["revoked_at"] is not None for k in rows_of(api, api_keys, api_keys.c.user_id == anonymous))
    record = row_of(api, account_erasures, anonymized_user_id=anonymous)
    assert (record["requested_by"], record["jobs_anonymized"], record["objects_deleted"], record["keys_revoked"]) == (
        anonymous, 3, 3, 1)
    assert row_of(api, jobs, id=others)["prompt"] == "a private prompt"  # the other user's job is untouched

    # Every credential of the account answers 401; erasing again too (the account is gone).
    with api.client(**user.headers) as http:
        assert error_of(http.get("/api/v1/me")) == (401, "revoked_api_key", "this API key has been revoked")
        assert error_of(http.delete("/api/v1/users/me")) == (401, "revoked_api_key", "this API key has been revoked")
    with api.client(Authorization=f"Bearer {session['access_token']}") as http:
        gone = (401, "invalid_token", "the account of this token no longer exists")
        assert error_of(http.get("/api/v1/me")) == gone
        assert error_of(http.delete("/api/v1/users/me")) == gone
    with api.client() as http:
        assert error_of(http.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})) == (
            401, "invalid_refresh_token", "the refresh token is invalid")
        assert error_of(http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})) == (
            401, "invalid_credentials", "wrong email or password")
        # The address is free again: signing up with it makes a new, empty account.
        again = http.post("/api/v1/auth/signup", json={"email": user.email, "password": PASSWORD})
    assert again.status_code == 201 and again.json()["id"] not in (user.id, anonymous)
    assert again.json()["credit_balance"] == "0.0000"


def test_an_admin_sees_the_anonymized_jobs(api, storage, admin, tmp_path):
    person = make_account(api)
    job_id = finished_job(api, storage, tmp_path, person.id)
    with api.client(**admin.headers) as http:
        erased = http.delete(f"/api/v1/users/{person.id}")
        assert erased.status_code == 200, erased.text
        anonymous = erased.json()["anonymized_user_id"]
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        listed = {u["id"]: u for u in http.get("/api/v1/users", params={"limit": 200}).json()}
    assert (job["user_id"], job["prompt"], job["negative_prompt"], job["status"], job["video_url"]) == (
        anonymous, "", "", "succeeded", None)
    assert person.id not in listed and listed[anonymous]["email"] == f"{anonymous}@erased.invalid"
    assert listed[anonymous]["deleted_at"] is not None
    assert row_of(api, account_erasures, anonymized_user_id=anonymous)["requested_by"] == admin.id


def test_unknown_and_already_erased_accounts(api, admin):
    person = make_account(api)
    with api.client(**admin.headers) as http:
        assert error_of(http.delete("/api/v1/users/u_0000000000000000")) == (
            404, "user_not_found", "user u_0000000000000000 does not exist")
        anonymous = http.delete(f"/api/v1/users/{person.id}").json()["anonymized_user_id"]
        assert error_of(http.delete(f"/api/v1/users/{person.id}")) == (
            404, "user_not_found", f"user {person.id} does not exist")
        assert error_of(http.delete(f"/api/v1/users/{anonymous}")) == (
            409, "already_erased", f"account {anonymous} has already been erased")


def test_an_erased_admin_is_renamed_in_the_erasures_they_made(api, admin):
    person, other_admin = make_account(api), make_account(api, "admin", None)
    with api.client(**admin.headers) as http:
        first = http.delete(f"/api/v1/users/{person.id}").json()["anonymized_user_id"]
    with api.client(**other_admin.headers) as http:
        second = http.delete(f"/api/v1/users/{admin.id}").json()["anonymized_user_id"]
    assert row_of(api, account_erasures, anonymized_user_id=first)["requested_by"] == second
    assert row_of(api, account_erasures, anonymized_user_id=second)["requested_by"] == other_admin.id


def test_only_an_admin_erases_someone_else(api, user, support):
    victim = make_account(api)
    for account in (user, support):
        with api.client(**account.headers) as http:
            refused = http.delete(f"/api/v1/users/{victim.id}")
        assert error_of(refused) == (403, "admin_only", "this action needs the admin role")
    read_only_admin = make_account(api, "admin", None)
    read_key = ApiKeys(api.engine).create(read_only_admin.id, "read only", ["read"]).key
    with api.client(**{"X-API-Key": read_key}) as http:
        assert error_of(http.delete(f"/api/v1/users/{victim.id}")) == (
            403, "read_only_key", "this API key has the read scope only")
    with api.client() as http:
        assert http.delete(f"/api/v1/users/{victim.id}").status_code == 401
    with api.client(**victim.headers) as http:
        assert http.get("/api/v1/me").status_code == 200  # still there


def test_a_read_only_key_cannot_erase_its_account_but_support_may_leave(api, support):
    person = make_account(api)
    read_key = ApiKeys(api.engine).create(person.id, "read only", ["read"]).key
    with api.client(**{"X-API-Key": read_key}) as http:
        assert error_of(http.delete("/api/v1/users/me")) == (
            403, "read_only_key", "this API key has the read scope only")
    with api.client(**person.headers) as http:
        assert http.get("/api/v1/me").status_code == 200
    with api.client(**support.headers) as http:  # support is read-only for others' data, not for leaving
        erased = http.delete("/api/v1/users/me")
    assert erased.status_code == 200 and erased.json()["keys_revoked"] == 1
    with api.client(**support.headers) as http:
        assert http.get("/api/v1/users").status_code == 401


def status_counts(api) -> dict[str, int]:
    with api.engine.connect() as conn:
        return dict(conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all())


def test_the_kpis_add_up_after_an_erasure(api, storage, admin, tmp_path):
    """The same KPIs before and after (counts per status and day, active users, credits, GPU time)."""
    days = DayRange(date(2020, 2, 1), date(2020, 2, 3))
    person, neighbour = make_account(api), make_account(api)
    for offset, status in enumerate(["succeeded", "succeeded", "failed", "rejected", "canceled", "succeeded"]):
        day = datetime(2020, 2, 1 + offset % 3, 10, offset, tzinfo=UTC)
        finished_job(api, storage, tmp_path, person.id, status=status, created_at=day, prompt=f"private {offset}")
        if offset % 2:
            finished_job(api, storage, tmp_path, neighbour.id, status=status, created_at=day, prompt=f"n {offset}")
    before, counts = daily_kpis_sql(api.engine, days), status_counts(api)
    assert [d["active_users"] for d in before] == [2, 2, 2] and sum(d["total_jobs"] for d in before) == 9

    with api.client(**admin.headers) as http:
        erased = http.delete(f"/api/v1/users/{person.id}")
    assert erased.status_code == 200 and erased.json()["jobs_anonymized"] == 6
    assert erased.json()["objects_deleted"] == 3 * len(OUTPUTS) and erased.json()["jobs_canceled"] == 0
    assert daily_kpis_sql(api.engine, days) == before
    assert status_counts(api) == counts


def test_an_erasure_stopped_by_the_storage_is_finished_by_running_it_again(api, storage, tmp_path):
    """The account is locked out first; the second run deletes the outputs and anonymizes."""

    class Unavailable(LocalObjectStorage):
        def delete_prefix(self, prefix: str) -> int:
            raise StorageUnavailableError("the bucket is unreachable")

    person = make_account(api)
    job_id = finished_job(api, storage, tmp_path, person.id)
    with pytest.raises(StorageUnavailableError):
        AccountEraser(api.engine, Unavailable(root=storage.root, bucket=storage.bucket)).erase(
            person.id, requested_by="admin-x")
    locked = row_of(api, users, id=person.id)
    assert locked["deleted_at"] is not None and locked["password_hash"] is None
    with api.client(**person.headers) as http:
        assert error_of(http.get("/api/v1/me")) == (401, "revoked_api_key", "this API key has been revoked")
    assert len(storage.list_prefix(job_prefix(job_id))) == len(OUTPUTS)

    summary = AccountEraser(api.engine, storage).erase(person.id, requested_by="admin-x")
    assert (summary.jobs_anonymized, summary.objects_deleted, summary.keys_revoked) == (1, len(OUTPUTS), 1)
    assert summary.erased_at == locked["deleted_at"]
    assert storage.list_prefix(job_prefix(job_id)) == [] and row_of(api, users, id=person.id) is None
    assert row_of(api, jobs, id=job_id)["user_id"] == summary.anonymized_user_id


def test_an_erasure_removes_storyboards_transcripts_and_uploads(api, storage, user, tmp_path):
    from videogen.storage.uploads import user_prefix

    with api.client(**user.headers) as http:
        film = http.post("/api/v1/jobs", json={"prompt": "my film", "storyboard": {"scenes": [
            {"prompt": "my private scene", "duration_s": 1, "narration": "my private words"}]}})
        assert film.status_code == 201, film.text
    (tmp_path / "voice.wav").write_bytes(b"RIFF")
    storage.put_file(f"{user_prefix(user.id)}audio-prompt-1.wav", tmp_path / "voice.wav")
    with api.engine.begin() as conn:
        spoken = conn.execute(jobs.insert().values(
            user_id=user.id, prompt="my spoken words", transcript="my spoken words", status="succeeded",
            audio_prompt_key=f"{user_prefix(user.id)}audio-prompt-1.wav").returning(jobs.c.id)).scalar_one()
    with api.client(**user.headers) as http:
        erased = http.delete("/api/v1/users/me")
    assert erased.status_code == 200, erased.text
    assert erased.json()["objects_deleted"] == 1 and storage.list_prefix(user_prefix(user.id)) == []
    for job_id in (film.json()["id"], spoken):
        row = row_of(api, jobs, id=job_id)
        assert (row["storyboard"], row["transcript"], row["audio_prompt_key"], row["prompt"]) == (None, None, None, "")
