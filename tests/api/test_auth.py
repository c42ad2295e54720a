"""Sign-up, login, access tokens, rotating refresh tokens and API keys, over real HTTP."""

from __future__ import annotations

import time

import jwt

from api.app import known_revisions
from tests.api.conftest import PASSWORD, make_account
from videogen.accounts.tokens import AccessTokens
from videogen.accounts.users import Principal


HEAD = known_revisions()[0]  # this code's newest migration

def error_of(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_health_ready_and_openapi(api):
    with api.client() as http:
        assert http.get("/health").json() == {"status": "ok"}
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "schema": HEAD}
        paths = http.get("/openapi.json").json()["paths"]
        assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/stream", "/api/v1/me",
                "/api/v1/auth/login"} <= set(paths)
        assert http.get("/docs").status_code == 200


def test_sign_up_log_in_and_read_me(api):
    with api.client() as http:
        created = http.post("/api/v1/auth/signup", json={"email": "Ana@Example.com", "password": PASSWORD})
        assert created.status_code == 201
        assert created.json()["email"] == "ana@example.com" and created.json()["role"] == "user"
        assert "password" not in created.text and PASSWORD not in created.text
        again = http.post("/api/v1/auth/signup", json={"email": "ana@example.com", "password": PASSWORD})
        assert error_of(again) == (409, "email_taken", "an account with email 'ana@example.com' already exists")
        tokens = http.post("/api/v1/auth/login", json={"email": "ana@example.com", "password": PASSWORD}).json()
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200
        assert me.json()["user"]["email"] == "ana@example.com" and me.json()["user"]["credit_balance"] == "0.0000"


def test_wrong_password_and_unknown_email_get_the_same_answer(api, user):
    with api.client() as http:
        wrong = http.post("/api/v1/auth/login", json={"email": user.email, "password": "not the password"})
        unknown = http.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert error_of(wrong) == error_of(unknown) == (401, "invalid_credentials", "wrong email or password")


def test_sign_up_refuses_a_short_password_and_a_bad_email(api):
    with api.client() as http:
        short = http.post("/api/v1/auth/signup", json={"email": "bo@example.com", "password": "short"})
        bad = http.post("/api/v1/auth/signup", json={"email": "not-an-email", "password": PASSWORD})
    assert error_of(short) == (422, "invalid_password", "password must be 10 to 256 characters long (got 5)")
    assert error_of(bad) == (422, "invalid_email", "email 'not-an-email' is not an email address")


def test_refresh_rotates_and_a_reused_token_revokes_the_session(api, user):
    with api.client() as http:
        first = http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()
        second = http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200
        second = second.json()
        assert second["refresh_token"] != first["refresh_token"]
        # The first token again: someone copied it. Both it and its successor stop working.
        reused = http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert error_of(reused)[:2] == (401, "refresh_token_reused")
        after = http.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert error_of(after) == (401, "revoked_refresh_token", "the refresh token has been revoked; log in again")
        # Logging out revokes a fresh session the same way.
        third = http.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()
        assert http.post("/api/v1/auth/logout", json={"refresh_token": third["refresh_token"]}).status_code == 204
        assert error_of(http.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}))[1] \
            == "revoked_refresh_token"
        assert error_of(http.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})) == \
            (401, "invalid_refresh_token", "the refresh token is invalid")


def test_missing_expired_and_tampered_tokens_are_refused(api, user):
    principal = Principal(user.id, user.email, "user")
    expired = AccessTokens(api.jwt_secret, ttl_s=60).issue(principal, now=time.time() - 3600)
    valid = AccessTokens(api.jwt_secret, ttl_s=60).issue(principal)
    header, payload, signature = valid.split(".")
    tampered = ".".join([header, payload, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")])
    forged = jwt.encode({"sub": user.id, "iss": "videogen", "typ": "access", "iat": int(time.time()),
                         "exp": int(time.time()) + 60}, "another key of at least thirty-two bytes!!", algorithm="HS256")
    with api.client() as http:
        assert error_of(http.get("/api/v1/me")) == (
            401, "unauthenticated",
            "authentication required: send 'Authorization: Bearer <access token>' or 'X-API-Key: <key>'")
        assert error_of(http.get("/api/v1/me", headers={"Authorization": f"Bearer {expired}"})) == (
            401, "token_expired", "the access token has expired; refresh it")
        for token in (tampered, forged, "not.a.token"):
            assert error_of(http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})) == (
                401, "invalid_token", "the access token is invalid")
        assert error_of(http.get("/api/v1/me", headers={"Authorization": f"Basic {valid}"})) == (
            401, "invalid_token", "the Authorization header must be 'Bearer <access token>'")
        response = http.get("/api/v1/me", headers={"Authorization": f"Bearer {valid}"})
        assert response.status_code == 200 and response.json()["user"]["id"] == user.id
    log = api.log_text()
    assert valid not in log and expired not in log and signature not in log


def test_api_keys_are_shown_once_listed_by_prefix_and_revocable(api, user):
    with api.client(**user.headers) as http:
        created = http.post("/api/v1/me/api-keys", json={"name": "ci", "scopes": ["read"]})
        assert created.status_code == 201
        key = created.json()["key"]
        assert key.startswith(f"vg_{created.json()['prefix']}_") and created.json()["scopes"] == ["read"]
        listed = http.get("/api/v1/me/api-keys").json()
        assert {k["name"] for k in listed} == {"tests", "ci"} and key not in str(listed)
        with api.client(**{"X-API-Key": key}) as reader:
            assert reader.get("/api/v1/me").status_code == 200
            assert error_of(reader.post("/api/v1/jobs", json={"prompt": "a fox"})) == (
                403, "read_only_key", "this API key has the read scope only")
            assert http.delete(f"/api/v1/me/api-keys/{created.json()['id']}").status_code == 204
            assert error_of(reader.get("/api/v1/me")) == (401, "revoked_api_key", "this API key has been revoked")
        assert error_of(http.get("/api/v1/me", headers={"X-API-Key": key[:-1] + "x"}))[1] == "invalid_api_key"
    other = make_account(api)
    with api.client(**other.headers) as http:  # someone else's key id: not found, as if it did not exist
        assert error_of(http.delete(f"/api/v1/me/api-keys/{created.json()['id']}")) == (
            404, "not_found", f"API key {created.json()['id']} does not exist")
    assert key not in api.log_text()


def test_ready_is_503_while_the_schema_is_behind_and_200_when_it_is_ahead(admin_url, tmp_path):
    import secrets as token

    import httpx
    import sqlalchemy as sa

    from tests.api.conftest import start_api
    from tests.conftest import create_database
    from videogen.db.migrate import upgrade
    from videogen.devtools.processes import stop_session

    url = create_database(admin_url, migrate=False)
    upgrade(url, "0003")
    process, base, _ = start_api(url, tmp_path, jwt_secret=token.token_hex(32))
    try:
        behind = httpx.get(base + "/ready")
        assert error_of(behind) == (503, "not_ready",
                                    f"the database schema is at 0003, behind {HEAD}: run videogen db upgrade")
        upgrade(url)
        assert httpx.get(base + "/ready").status_code == 200
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # a later release migrated first: this release keeps serving
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
        engine.dispose()
        assert httpx.get(base + "/ready").status_code == 200
    finally:
        stop_session(process, grace_s=20)


def test_a_read_only_key_cannot_make_itself_a_write_key_or_revoke_keys(api, user):
    with api.client(**user.headers) as http:
        reader = http.post("/api/v1/me/api-keys", json={"name": "reader", "scopes": ["read"]}).json()
    with api.client(**{"X-API-Key": reader["key"]}) as http:
        assert error_of(http.post("/api/v1/me/api-keys", json={"name": "x", "scopes": ["read", "write"]})) == (
            403, "read_only_key", "this API key has the read scope only")
        assert error_of(http.delete(f"/api/v1/me/api-keys/{reader['id']}"))[:2] == (403, "read_only_key")


def test_log_in_attempts_are_limited_per_address_across_processes(api, tmp_path):
    import secrets as token

    import httpx

    from tests.api.conftest import another_api

    with another_api(api, tmp_path, VIDEOGEN_API_AUTH_ATTEMPTS_PER_MIN="3") as url:
        # One minute window: 3 attempts pass (wrong password: 401), the 4th is refused before hashing.
        # A burst that straddled a minute boundary proves nothing and is sent again, from a fresh email
        # and a fresh client address (uvicorn takes X-Forwarded-For from a local proxy).
        for attempt in range(3):
            started = time.time()
            email, address = f"{token.token_hex(4)}@example.com", f"203.0.113.{10 + attempt}"
            answers = [httpx.post(url + "/api/v1/auth/login", json={"email": email, "password": "x" * 12},
                                  headers={"X-Forwarded-For": address}) for _ in range(4)]
            if int(started // 60) == int(time.time() // 60):
                break
    codes = [a.status_code for a in answers]
    assert codes[:3] == [401, 401, 401] and codes[3] == 429
    assert error_of(answers[3])[:2] == (429, "too_many_attempts") and int(answers[3].headers["Retry-After"]) >= 1
