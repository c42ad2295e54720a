"""Jobs through the API: submit (credits reserved), read, list, cancel (refund), retry, events,
roles and visibility, and every bad input with the status and message a client sees."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from tests.api.conftest import make_account
from tests.api.test_auth import error_of
from videogen.db.schema import credit_ledger, jobs, users
from videogen.lifecycle import JobStore

TINY = {"prompt": "a red fox running in snow", "width": 64, "height": 64, "num_frames": 9, "steps": 4}
TINY_PRICE = Decimal("0.1475")  # 9 × 64 × 64 × 4 / 1e6, rounded up to 4 decimals


def balance(api, user_id: str) -> Decimal:
    with api.engine.connect() as conn:
        return conn.execute(sa.select(users.c.credit_balance).where(users.c.id == user_id)).scalar_one()


def test_submit_reserves_the_price_and_returns_the_job(api, user):
    with api.client(**user.headers) as http:
        response = http.post("/api/v1/jobs", json=TINY)
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["status"] == "pending" and job["user_id"] == user.id and job["model"] == "tiny"
        assert job["parameters"]["width"] == 64 and job["queue_position"] is not None
        assert balance(api, user.id) == Decimal("100") - TINY_PRICE
        assert http.get(f"/api/v1/jobs/{job['id']}").json()["id"] == job["id"]
        events = http.get(f"/api/v1/jobs/{job['id']}/events").json()
        assert [(e["status"], e["stage"]) for e in events] == [("pending", "submit")]
        me = http.get("/api/v1/me").json()
        assert [(e["kind"], e["amount"], e["job_id"]) for e in me["ledger"][:2]] == [
            ("reserve", f"-{TINY_PRICE}", job["id"]), ("grant", "100.0000", None)]


def test_the_same_idempotency_key_returns_the_same_job_once_charged(api, user):
    with api.client(**user.headers) as http:
        first = http.post("/api/v1/jobs", json=TINY, headers={"Idempotency-Key": "batch-7"})
        again = http.post("/api/v1/jobs", json=TINY, headers={"Idempotency-Key": "batch-7"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert balance(api, user.id) == Decimal("100") - TINY_PRICE
        other = http.post("/api/v1/jobs", json={**TINY, "prompt": "another fox"}, headers={"Idempotency-Key": "batch-7"})
        assert error_of(other) == (409, "idempotency_key_reused", "Idempotency-Key 'batch-7' was used for another "
                                   f"request (job {first.json()['id']}); use a new key for a new request")
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "priority": 5})) == (
            403, "admin_only", "only an admin may set a job's priority")
        bad = http.post("/api/v1/jobs", json=TINY, headers={"Idempotency-Key": "x" * 201})
        assert error_of(bad) == (422, "invalid_idempotency_key",
                                 "Idempotency-Key must be 1 to 200 printable characters")


def test_cancel_refunds_once_and_retry_reserves_again(api, user):
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
        canceled = http.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert balance(api, user.id) == Decimal("100")
        again = http.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert error_of(again) == (409, "invalid_transition",
                                   f"job {job['id']} is canceled; only pending, queued or running jobs can be canceled")
        assert balance(api, user.id) == Decimal("100")  # no second refund
        retried = http.post(f"/api/v1/jobs/{job['id']}/retry")
        assert retried.status_code == 200 and retried.json()["status"] == "pending"
        assert retried.json()["submission"] == 1
        assert balance(api, user.id) == Decimal("100") - TINY_PRICE
    with api.engine.connect() as conn:
        kinds = conn.execute(sa.select(credit_ledger.c.kind, credit_ledger.c.submission)
                             .where(credit_ledger.c.job_id == job["id"]).order_by(credit_ledger.c.id)).all()
    assert [tuple(k) for k in kinds] == [("reserve", 0), ("refund", 0), ("reserve", 1)]


def fail_in_a_run(api, job_id: int, run_id: str) -> JobStore:
    """What a Dagster run does to a job that then fails: queued, claimed, failed (out of memory)."""
    store = JobStore(api.engine)
    store.queue.mark_queued({job_id: run_id})
    assert store.runs.claim(job_id, run_id)
    assert store.runs.fail(job_id, run_id=run_id, code="out_of_memory", message="CUDA out of memory")
    return store


def test_a_failure_inside_the_lifecycle_refunds_exactly_once(api, user):
    """The refund is part of the transition, so a failure reported by a Dagster run refunds too."""
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
    store = fail_in_a_run(api, job["id"], "run-1")
    assert not store.runs.fail(job["id"], run_id="run-1", code="out_of_memory", message="again")
    assert balance(api, user.id) == Decimal("100")


def test_insufficient_credits_is_402_with_the_missing_amount_and_no_job(api):
    poor = make_account(api, credits="0.1")
    with api.client(**poor.headers) as http:
        response = http.post("/api/v1/jobs", json=TINY)
    assert response.status_code == 402
    body = response.json()["error"]
    assert body == {"code": "insufficient_credits", "required": "0.1475", "balance": "0.1000", "missing": "0.0475",
                    "message": "this job costs 0.1475 credits and the balance is 0.1000: 0.0475 credits are missing"}
    with api.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs).where(jobs.c.user_id == poor.id)).scalar() == 0


def test_an_invalid_request_is_422_stored_rejected_and_not_charged(api, user):
    with api.client(**user.headers) as http:
        response = http.post("/api/v1/jobs", json={**TINY, "width": 63})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_width" and "width" in error["message"]
        stored = http.get(f"/api/v1/jobs/{error['job_id']}").json()
        assert stored["status"] == "rejected" and stored["error"]["code"] == "invalid_width"
    assert balance(api, user.id) == Decimal("100")


def test_users_see_only_their_jobs_support_reads_all_and_writes_nothing(api, user, support, admin):
    other = make_account(api)
    with api.client(**user.headers) as http:
        mine = http.post("/api/v1/jobs", json=TINY).json()
    with api.client(**other.headers) as http:
        assert error_of(http.get(f"/api/v1/jobs/{mine['id']}")) == (404, "not_found", f"job {mine['id']} does not exist")
        assert error_of(http.get("/api/v1/jobs/999999999")) == (404, "not_found", "job 999999999 does not exist")
        assert error_of(http.post(f"/api/v1/jobs/{mine['id']}/cancel"))[0] == 404
        assert http.get("/api/v1/jobs").json()["items"] == []
        assert error_of(http.get("/api/v1/jobs", params={"user_id": user.id})) == (
            403, "staff_only", "listing another user's jobs needs the admin or support role")
    with api.client(**support.headers) as http:
        assert http.get(f"/api/v1/jobs/{mine['id']}").json()["id"] == mine["id"]
        assert [j["id"] for j in http.get("/api/v1/jobs", params={"user_id": user.id}).json()["items"]][0] == mine["id"]
        assert error_of(http.post(f"/api/v1/jobs/{mine['id']}/cancel")) == (
            403, "read_only_role", "support accounts are read-only")
        assert error_of(http.post("/api/v1/jobs", json=TINY)) == (403, "read_only_role", "support accounts are read-only")
        assert error_of(http.post(f"/api/v1/users/{user.id}/credits", json={"amount": 5})) == (
            403, "admin_only", "this action needs the admin role")
        assert http.get("/api/v1/users").status_code == 200
    with api.client(**admin.headers) as http:
        assert http.post(f"/api/v1/jobs/{mine['id']}/cancel").json()["status"] == "canceled"
        granted = http.post(f"/api/v1/users/{user.id}/credits", json={"amount": "2.5", "note": "welcome"})
        assert granted.status_code == 200 and Decimal(granted.json()["credit_balance"]) == balance(api, user.id)
    with api.client(**user.headers) as http:
        assert error_of(http.get("/api/v1/users")) == (403, "staff_only", "this action needs the admin or support role")


def test_listing_pages_with_a_cursor_and_filters(api):
    owner = make_account(api)
    with api.client(**owner.headers) as http:
        ids = [http.post("/api/v1/jobs", json=TINY).json()["id"] for _ in range(5)]
        http.post(f"/api/v1/jobs/{ids[0]}/cancel")
        first = http.get("/api/v1/jobs", params={"limit": 2}).json()
        second = http.get("/api/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = http.get("/api/v1/jobs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        assert [j["id"] for j in first["items"] + second["items"] + third["items"]] == ids[::-1]
        assert third["next_cursor"] is None
        canceled = http.get("/api/v1/jobs", params={"status": "canceled"}).json()["items"]
        assert [j["id"] for j in canceled] == [ids[0]]
        assert http.get("/api/v1/jobs", params={"model": "other"}).json()["items"] == []
        bad = http.get("/api/v1/jobs", params={"status": "done"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_parameter"
        assert "status" in bad.json()["error"]["message"]


def test_bad_bodies_get_a_clear_status_and_message(api, user):
    with api.client(**user.headers) as http:
        malformed = http.post("/api/v1/jobs", content=b'{"prompt": "a fox",', headers={"Content-Type": "application/json"})
        assert error_of(malformed)[:2] == (422, "malformed_json")
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "width": "64"})) == (
            422, "invalid_body", "width: Input should be a valid integer")
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "colour": "red"})) == (
            422, "invalid_body", "colour: unknown field")
        assert error_of(http.post("/api/v1/jobs", json={"width": 64})) == (422, "invalid_body", "prompt: required")
        too_big = http.post("/api/v1/jobs", json={**TINY, "prompt": "x" * (65 * 1024)})
        assert error_of(too_big) == (413, "body_too_large", "the request body is larger than 64 KiB")
        assert error_of(http.post(f"/api/v1/users/{user.id}/credits", json={"amount": -5}))[0] == 403


def test_sql_metacharacters_are_data_and_nul_bytes_are_refused_with_a_reason(api, user):
    sneaky = "a fox'); DROP TABLE jobs; -- \" \\ %s $1"
    with api.client(**user.headers) as http:
        stored = http.post("/api/v1/jobs", json={**TINY, "prompt": sneaky, "negative_prompt": "' OR 1=1 --"})
        assert stored.status_code == 201 and stored.json()["prompt"] == sneaky
        nul = http.post("/api/v1/jobs", json={**TINY, "prompt": "a fox\u0000 in snow"})
        assert nul.status_code == 422 and nul.json()["error"]["code"] == "control_characters"
        assert nul.json()["error"]["message"] == "prompt contains a NUL byte at character 5; remove it and resubmit"
        login = http.post("/api/v1/auth/login", json={"email": "a\u0000@example.com", "password": "' OR 1=1 --xx"})
        assert error_of(login) == (401, "invalid_credentials", "wrong email or password")
    with api.engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.prompt).where(jobs.c.id == stored.json()["id"])).scalar() == sneaky


def test_credit_grants_refuse_negative_and_non_numeric_amounts(api, admin, user):
    with api.client(**admin.headers) as http:
        for amount, message in ((-5, "amount must be greater than 0, got '-5'"),
                                ("ten", "amount must be a number, got 'ten'"),
                                ("1.00001", "amount has at most 4 decimals, got '1.00001'"),
                                ("NaN", "amount must be a finite number, got 'NaN'")):
            assert error_of(http.post(f"/api/v1/users/{user.id}/credits", json={"amount": amount})) == (
                422, "invalid_amount", message)
        assert error_of(http.post("/api/v1/users/u_nobody/credits", json={"amount": 1})) == (
            404, "user_not_found", "user u_nobody does not exist")
    assert balance(api, user.id) == Decimal("100")


def test_an_account_erased_after_authentication_gets_no_job(api):
    """The submission re-checks the account under the lock an erasure takes: no row, not even rejected."""
    import pytest

    from videogen.errors import AuthenticationError
    from videogen.generation.registry import ModelRegistry
    from videogen.lifecycle import Account, JobRequest

    gone = make_account(api)
    with api.engine.begin() as conn:
        conn.execute(users.update().where(users.c.id == gone.id).values(deleted_at=sa.func.now()))
    for prompt in ("a fox", ""):  # a valid request and one that would be rejected
        with pytest.raises(AuthenticationError, match="the account of this key or token no longer exists"):
            JobStore(api.engine).submissions.submit(JobRequest(user_id=gone.id, prompt=prompt),
                                                    registry=ModelRegistry.from_env(), account=Account())
    with api.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs).where(jobs.c.user_id == gone.id)).scalar() == 0


def test_a_job_resubmitted_after_its_run_died_is_refunded_when_it_finally_fails(api, user):
    """A lost run resubmits the job under a new submission number without a new reservation: the
    reservation made at submission is the one refunded (found in the main job's first run)."""
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
    store = JobStore(api.engine)
    for attempt in range(3):
        store.queue.mark_queued({job["id"]: f"run-{attempt}"})
        assert store.runs.claim(job["id"], f"run-{attempt}")
        if attempt < 2:
            assert store.queue.resubmit_lost(job["id"], run_id=f"run-{attempt}", delay_s=0, reason="run died")
    assert balance(api, user.id) == Decimal("100") - TINY_PRICE
    assert store.runs.fail(job["id"], run_id="run-2", code="worker_lost", message="run died")
    assert balance(api, user.id) == Decimal("100")
    with api.client(**user.headers) as http:  # a retry by the owner reserves again, and a new failure refunds it
        assert http.post(f"/api/v1/jobs/{job['id']}/retry").json()["submission"] == 3
        assert balance(api, user.id) == Decimal("100") - TINY_PRICE
        http.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert balance(api, user.id) == Decimal("100")


def test_credits_reconcile_after_a_mixed_batch(api, admin):
    """balance = grants − credits of succeeded jobs, whatever else happened (rejected, failed, canceled,
    a run lost and resubmitted, a retry), and the ledger sums to the balance."""
    owner = make_account(api, credits="3")
    store = JobStore(api.engine)
    big = {**TINY, "width": 128, "height": 128}  # 0.5899 credits
    with api.client(**owner.headers) as http:
        ok, failed, canceled, lost = (http.post("/api/v1/jobs", json=body).json()["id"] for body in (TINY, big, TINY, big))
        rejected = http.post("/api/v1/jobs", json={**TINY, "steps": 0})
        assert rejected.status_code == 422
        http.post(f"/api/v1/jobs/{canceled}/cancel")
    with api.client(**admin.headers) as http:
        assert http.post(f"/api/v1/users/{owner.id}/credits", json={"amount": "1.5"}).status_code == 200
    for job_id in (ok, failed, lost):
        store.queue.mark_queued({job_id: f"run-{job_id}"})
        assert store.runs.claim(job_id, f"run-{job_id}")
    # The run's validation writes jobs.credits (the same formula as the reservation); here, the prices.
    assert store.runs.succeed(ok, run_id=f"run-{ok}", output_uri="file:///v.mp4", thumbnail_uri="file:///t.png",
                              output_size_bytes=1, output_sha256="0" * 64, credits=TINY_PRICE)
    assert store.runs.fail(failed, run_id=f"run-{failed}", code="out_of_memory", message="CUDA out of memory")
    assert store.queue.resubmit_lost(lost, run_id=f"run-{lost}", delay_s=0, reason="run died")
    store.queue.mark_queued({lost: "run-again"})
    assert store.runs.claim(lost, "run-again")
    assert store.runs.succeed(lost, run_id="run-again", output_uri="file:///v2.mp4", thumbnail_uri="file:///t2.png",
                              output_size_bytes=1, output_sha256="1" * 64, credits=Decimal("0.5899"))
    charged = sum(store.reads.get(j)["credits"] for j in (ok, lost))
    assert charged == TINY_PRICE + Decimal("0.5899")
    assert balance(api, owner.id) == Decimal("3") + Decimal("1.5") - charged
    with api.engine.connect() as conn:
        ledger_sum = conn.execute(sa.select(sa.func.sum(credit_ledger.c.amount))
                                  .where(credit_ledger.c.user_id == owner.id)).scalar()
    assert ledger_sum == balance(api, owner.id)


def test_nul_bytes_anywhere_get_a_422_and_no_traceback_in_the_log(api, admin, user):
    with api.client(**admin.headers) as http:
        for response in (http.post(f"/api/v1/users/{user.id}/credits", json={"amount": 1, "note": "a\u0000b"}),
                         http.get("/api/v1/users", params={"after": "a\u0000b"}),
                         http.post("/api/v1/users/u%00x/credits", json={"amount": 1}),
                         http.get("/api/v1/jobs", params={"model": "ti\u0000ny"})):
            assert error_of(response) == (422, "control_characters", "text must not contain NUL characters")
        assert http.get("/api/v1/me").status_code == 200  # the connection is still good
    log = api.log_text()
    assert "Traceback" not in log and "[parameters:" not in log


def test_huge_and_exponent_amounts_are_refused_with_a_reason(api, admin, user):
    with api.client(**admin.headers) as http:
        for amount in ("1e30", 10**30):
            assert error_of(http.post(f"/api/v1/users/{user.id}/credits", json={"amount": amount}))[:2] == (
                422, "invalid_amount")
        assert http.post(f"/api/v1/users/{user.id}/credits", json={"amount": "1E+1"}).json()["credit_balance"] == "110.0000"


def test_a_re_executed_failed_job_reserves_its_price_again(api, user):
    """An operator re-executes a failed partition (a claim of a failed job): the failure refunded it,
    so it is charged again; a job that succeeds is never free."""
    with api.client(**user.headers) as http:
        job = http.post("/api/v1/jobs", json=TINY).json()
    store = fail_in_a_run(api, job["id"], "run-a")
    assert balance(api, user.id) == Decimal("100")
    assert store.runs.claim(job["id"], "run-b")  # the re-execution
    assert balance(api, user.id) == Decimal("100") - TINY_PRICE
    assert store.reads.get(job["id"])["submission"] == 1


def test_a_retry_counts_against_the_active_jobs_cap(api, tmp_path):
    import httpx

    from tests.api.conftest import another_api

    owner = make_account(api)
    with another_api(api, tmp_path, VIDEOGEN_API_MAX_ACTIVE_JOBS="2") as url, \
            httpx.Client(base_url=url, headers=owner.headers, timeout=30) as http:
        first = http.post("/api/v1/jobs", json=TINY).json()
        http.post(f"/api/v1/jobs/{first['id']}/cancel")
        assert http.post("/api/v1/jobs", json=TINY).status_code == 201
        assert http.post("/api/v1/jobs", json=TINY).status_code == 201
        assert error_of(http.post(f"/api/v1/jobs/{first['id']}/retry"))[:2] == (429, "too_many_active_jobs")
        assert http.get(f"/api/v1/jobs/{first['id']}").json()["status"] == "canceled"


def test_a_submission_with_nothing_to_refuse_is_one_transaction_and_answers_like_the_general_path(api):
    """api_submit_job() answers it: the key check's rate-limit count, the job, its audit event and its
    reservation are written by one transaction (one xmin). A replay of its Idempotency-Key takes the
    general path and answers with the same job (200 instead of 201)."""
    user = make_account(api)
    with api.client(**user.headers, **{"Idempotency-Key": "one-trip"}) as http:
        first = http.post("/api/v1/jobs", json=TINY)
        assert first.status_code == 201, first.text
        job_id = first.json()["id"]
        with api.engine.connect() as conn:
            writers = {conn.execute(sa.text(sql), {"j": job_id, "u": user.id}).scalar_one() for sql in (
                "SELECT xmin::text FROM jobs WHERE id = :j",
                "SELECT xmin::text FROM job_events WHERE job_id = :j",
                "SELECT xmin::text FROM credit_ledger WHERE job_id = :j AND kind = 'reserve'",
                "SELECT xmin::text FROM api_rate_limits WHERE user_id = :u")}
        assert len(writers) == 1
        again = http.post("/api/v1/jobs", json=TINY)
    assert again.status_code == 200, again.text
    assert {**first.json(), "queue_position": None} == {**again.json(), "queue_position": None}
    assert balance(api, user.id) == Decimal("100") - TINY_PRICE


def test_a_refused_submission_is_counted_once_and_refused_like_before(api):
    """Refusals leave the one-trip statement without a trace; the general path then counts the request
    once and answers. Bad credentials are refused before a bad body, as every route does."""
    poor = make_account(api, credits="0.01")
    with api.client(**poor.headers) as http:
        assert error_of(http.post("/api/v1/jobs", json=TINY))[0] == 402
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "width": "64"}))[0] == 422
    with api.engine.connect() as conn:
        hits = conn.execute(sa.text("SELECT sum(count) FROM api_rate_limits WHERE user_id = :u"),
                            {"u": poor.id}).scalar_one()
    assert hits == 2
    with api.client(**{"X-API-Key": poor.key[:-2] + "xx"}) as http:
        assert error_of(http.post("/api/v1/jobs", json={**TINY, "width": "64"}))[:2] == (401, "invalid_api_key")


def test_the_201s_queue_position_is_the_gets_and_the_waiting_jobs_ahead(api):
    """api_submit_job()'s count (the 201) and JobPageReads' (the GET) name the same jobs: pending or
    queued, with a smaller id; running, finished and later jobs are not ahead."""
    user = make_account(api)
    with api.engine.begin() as conn:
        for status in ("pending", "queued", "running", "succeeded", "failed", "rejected", "canceled", "queued"):
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) VALUES ('someone else', 'x', :s)"),
                         {"s": status})
    with api.client(**user.headers) as http:
        created = http.post("/api/v1/jobs", json=TINY)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        with api.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('someone else', 'behind it')"))
            ahead = conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') "
                                         "AND id < :j"), {"j": job_id}).scalar_one()
            finished = conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status NOT IN ('pending', 'queued') "
                                            "AND id < :j"), {"j": job_id}).scalar_one()
        assert ahead >= 3 and finished >= 5
        assert created.json()["queue_position"] == http.get(f"/api/v1/jobs/{job_id}").json()["queue_position"] == ahead


def test_a_get_counts_once_on_either_path_and_hides_other_users_jobs(api):
    """GET /jobs/{id} in one statement (api_read_job()) when nothing is refused; otherwise the general
    path answers, and the request is still counted once against the rate limit."""
    owner, other = make_account(api), make_account(api)

    def hits(user_id: str) -> int:
        with api.engine.connect() as conn:
            return conn.execute(sa.text("SELECT coalesce(sum(count), 0) FROM api_rate_limits WHERE user_id = :u"),
                                {"u": user_id}).scalar_one()

    with api.client(**owner.headers) as http:
        job_id = http.post("/api/v1/jobs", json=TINY).json()["id"]
        before = hits(owner.id)
        read = http.get(f"/api/v1/jobs/{job_id}")
        assert read.status_code == 200 and read.json()["id"] == job_id and read.json()["status"] == "pending"
        assert read.json()["queue_position"] is not None
        assert hits(owner.id) == before + 1
    with api.client(**other.headers) as http:
        for missing in (job_id, job_id + 10_000, 2**63, 0):
            before = hits(other.id)
            assert error_of(http.get(f"/api/v1/jobs/{missing}"))[:2] == (404, "not_found"), missing
            assert hits(other.id) == before + 1
