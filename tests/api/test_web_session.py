"""The web app's API surface over real HTTP: the cookie session and its CSRF token, the quote (a dry
run of a submission), the model catalog, HTML error pages outside /api, and the demo's password."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.api.conftest import PASSWORD, make_account
from tests.api.test_auth import error_of
from tests.test_validation import BAD_REQUESTS
from videogen.accounts.users import Users
from videogen.devtools.demo import demo_password
from videogen.errors import UserNotFoundError


@contextlib.contextmanager
def browser_like(api) -> Iterator[httpx.Client]:
    """A client that keeps cookies like a browser, holding the CSRF cookie a page would have set."""
    with api.client() as http:
        assert http.get("/login").status_code == 200
        assert http.cookies.get("vg_csrf")
        yield http


def sign_in(http: httpx.Client, email: str) -> httpx.Response:
    return http.post("/api/v1/session", json={"email": email, "password": PASSWORD},
                     headers={"X-CSRF-Token": http.cookies["vg_csrf"]})


def test_sign_in_sets_httponly_cookies_and_the_session_reads_and_writes_with_the_csrf_token(api):
    account = make_account(api)
    with browser_like(api) as http:
        answer = sign_in(http, account.email)
        assert answer.status_code == 200 and answer.json()["user"]["email"] == account.email
        set_cookies = answer.headers.get_list("set-cookie")
        access = next(c for c in set_cookies if c.startswith("vg_access="))
        refresh = next(c for c in set_cookies if c.startswith("vg_refresh="))
        assert "HttpOnly" in access and "SameSite=lax" in access and "Path=/" in access
        assert "HttpOnly" in refresh and "Path=/api/v1/session" in refresh and "SameSite=strict" in refresh
        assert "HttpOnly" not in next(c for c in set_cookies if c.startswith("vg_csrf="))
        assert http.get("/api/v1/me").json()["user"]["id"] == account.id

        # A write without the token (what a form on another site would send) is refused and does nothing.
        refused = http.post("/api/v1/jobs", json={"prompt": "a fox"})
        assert error_of(refused) == (403, "csrf_failed", "the CSRF token is missing or does not match: reload "
                                                         "the page and try again")
        wrong = http.post("/api/v1/jobs", json={"prompt": "a fox"}, headers={"X-CSRF-Token": "guess"})
        assert error_of(wrong)[:2] == (403, "csrf_failed")
        with api.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM jobs WHERE user_id = :u"), {"u": account.id}).scalar() == 0
        created = http.post("/api/v1/jobs", json={"prompt": "a fox"}, headers={"X-CSRF-Token": http.cookies["vg_csrf"]})
        assert created.status_code == 201 and created.json()["user_id"] == account.id


def test_signing_in_needs_the_csrf_token_too(api):
    account = make_account(api)
    with api.client() as http:  # no page visited: no CSRF cookie
        answer = http.post("/api/v1/session", json={"email": account.email, "password": PASSWORD})
        assert error_of(answer)[:2] == (403, "csrf_failed")
        assert "vg_access" not in http.cookies


def test_refresh_rotates_and_sign_out_ends_the_session(api):
    account = make_account(api)
    with browser_like(api) as http:
        sign_in(http, account.email)
        old_refresh = http.cookies["vg_refresh"]
        token = {"X-CSRF-Token": http.cookies["vg_csrf"]}
        renewed = http.post("/api/v1/session/refresh", headers=token)
        assert renewed.status_code == 200 and http.cookies["vg_refresh"] != old_refresh
        token = {"X-CSRF-Token": http.cookies["vg_csrf"]}
        assert http.delete("/api/v1/session", headers=token).status_code == 204
        assert "vg_access" not in http.cookies and "vg_refresh" not in http.cookies
        assert error_of(http.get("/api/v1/me"))[:2] == (401, "unauthenticated")
    with api.client() as http:  # the refresh token revoked at sign-out does not come back to life
        http.get("/login")
        http.cookies.set("vg_refresh", old_refresh, path="/api/v1/session")
        answer = http.post("/api/v1/session/refresh", headers={"X-CSRF-Token": http.cookies["vg_csrf"]})
        assert answer.status_code == 401
        http.cookies.delete("vg_refresh")
        answer = http.post("/api/v1/session/refresh", headers={"X-CSRF-Token": http.cookies["vg_csrf"]})
        assert error_of(answer) == (401, "session_ended", "the session has ended: sign in again")


def test_a_forged_or_expired_access_cookie_is_refused(api):
    with browser_like(api) as http:
        http.cookies.set("vg_access", "not-a-token")
        assert error_of(http.get("/api/v1/me")) == (401, "invalid_token", "the access token is invalid")


def test_the_quote_prices_a_draft_without_storing_anything(api):
    account = make_account(api, credits="0.2")
    with api.client(**account.headers) as http:
        affordable = http.post("/api/v1/jobs/quote", json={"prompt": "a fox", "num_frames": "9", "width": 64})
        assert affordable.status_code == 200
        body = affordable.json()
        assert body["valid"] and body["credits"] == "0.1475" and body["balance"] == "0.2000" and body["missing"] is None
        assert body["request"]["num_frames"] == 9 and body["request"]["seed"] is None and body["request"]["model"] == "tiny"
        dear = http.post("/api/v1/jobs/quote", json={"prompt": "a fox", "num_frames": "17"}).json()
        assert dear["valid"] and dear["credits"] == "0.2786" and dear["missing"] == "0.0786"
        unknown = http.post("/api/v1/jobs/quote", json={"prompt": "a fox", "colour": "red"})
        assert error_of(unknown) == (422, "invalid_body", "colour: unknown field")
    with api.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs WHERE user_id = :u"), {"u": account.id}).scalar() == 0


@pytest.mark.parametrize("fields,code,words", [case for case in BAD_REQUESTS
                                               if not any(isinstance(v, bytes) for v in case[0].values())])
def test_the_quote_names_the_field_of_each_bad_input(api, fields, code, words):
    account = make_account(api)
    with api.client(**account.headers) as http:
        body = http.post("/api/v1/jobs/quote", json=fields).json()
    assert body["valid"] is False and body["request"] is None and body["credits"] is None
    assert body["error"]["code"] == code and words in body["error"]["message"]
    assert body["error"]["field"] == next((name for name in fields if name != "prompt"), "prompt")


def test_a_bad_sign_up_names_its_field(api):
    account = make_account(api)
    with api.client(**account.headers) as http:
        bad = http.post("/api/v1/auth/signup", json={"email": "not-an-email", "password": PASSWORD})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "email"


def test_the_model_catalog_has_defaults_limits_and_presets(api):
    account = make_account(api)
    with api.client(**account.headers) as http:
        catalog = http.get("/api/v1/models").json()
    tiny = next(m for m in catalog["models"] if m["name"] == "tiny")
    assert tiny["default"] is True and tiny["defaults"]["num_frames"] == 9
    assert tiny["limits"]["max_width"] == 256 and tiny["limits"]["frame_multiple"] == 8
    assert catalog["quality_presets"] == ["STANDARD", "HD", "ULTRA"]
    with api.client() as http:
        assert error_of(http.get("/api/v1/models"))[:2] == (401, "unauthenticated")


def test_pages_and_their_errors_are_html_and_the_api_keeps_json(api):
    with api.client() as http:
        for path in ("/login", "/signup", "/videos", "/videos/new", "/videos/12", "/account", "/admin/kpis"):
            page = http.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
            assert page.headers["cache-control"] == "no-store"
        assert http.get("/", follow_redirects=False).headers["location"] == "/videos"
        for path in ("/nothing-here", "/videos/abc", "/static/nothing.js"):
            missing = http.get(path)
            assert missing.status_code == 404 and "Page not found" in missing.text and "Traceback" not in missing.text
        assert http.get("/api/v1/nothing").json()["error"]["code"] == "not_found"
        script = http.get("/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def test_set_password_and_the_demo_password_file(api, tmp_path):
    users = Users(api.engine)
    account = users.create("keyonly@example.com", None)
    first = demo_password(tmp_path)
    assert demo_password(tmp_path) == first and len(first) >= 12  # kept, not redrawn
    assert (tmp_path / "demo-password").stat().st_mode & 0o777 == 0o600
    users.set_password(account["id"], first)
    assert users.authenticate("keyonly@example.com", first).user_id == account["id"]
    with pytest.raises(UserNotFoundError):
        users.set_password("u_nobody", first)


def test_file_downloads_do_not_count_against_the_per_second_limit(api, tmp_path):
    """A page of thumbnails (and a player's byte ranges) is many requests at once: authenticated, but
    not rate-limited, while the API's other routes stay limited."""
    from tests.api.conftest import another_api

    account = make_account(api)
    thumb = tmp_path / "storage" / "t" / "thumb.png"
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    with api.engine.begin() as conn:
        job_id = conn.execute(sa.text(
            "INSERT INTO jobs (user_id, prompt, status, thumbnail_uri) VALUES (:u, 'a fox', 'succeeded', :t) "
            "RETURNING id"), {"u": account.id, "t": thumb.as_uri()}).scalar_one()
    with another_api(api, tmp_path, VIDEOGEN_API_RATE_LIMIT_PER_S="2") as url, \
            httpx.Client(base_url=url, headers=account.headers, timeout=30) as http:
        files = [http.get(f"/api/v1/jobs/{job_id}/thumbnail").status_code for _ in range(40)]
        reads = [http.get(f"/api/v1/jobs/{job_id}").status_code for _ in range(40)]
        anonymous = httpx.get(f"{url}/api/v1/jobs/{job_id}/thumbnail")
    assert files == [200] * 40
    assert 429 in reads  # 40 requests cannot spread over the 20 s that 2 per second would need
    assert error_of(anonymous)[:2] == (401, "unauthenticated")


def test_every_cookie_write_needs_the_token_put_and_delete_too(api):
    admin = make_account(api, "admin", None)
    other = make_account(api)
    with browser_like(api) as http:
        sign_in(http, admin.email)
        key = http.post("/api/v1/me/api-keys", json={"name": "k"}, headers={"X-CSRF-Token": http.cookies["vg_csrf"]})
        assert key.status_code == 201
        assert error_of(http.delete(f"/api/v1/me/api-keys/{key.json()['id']}"))[:2] == (403, "csrf_failed")
        assert error_of(http.put(f"/api/v1/users/{other.id}/role", json={"role": "admin"}))[:2] == (403, "csrf_failed")
        assert error_of(http.post("/api/v1/session/refresh"))[:2] == (403, "csrf_failed")
        assert error_of(http.delete("/api/v1/session"))[:2] == (403, "csrf_failed")
        assert Users(api.engine).get(other.id)["role"] == "user"
        assert http.get("/api/v1/me").status_code == 200  # reads need no token, and the session lives on


def test_a_refresh_keeps_the_csrf_token_and_a_new_password_ends_the_sessions(api):
    account = make_account(api)
    with browser_like(api) as http:
        sign_in(http, account.email)
        token = http.cookies["vg_csrf"]
        assert http.post("/api/v1/session/refresh", headers={"X-CSRF-Token": token}).status_code == 200
        assert http.cookies["vg_csrf"] == token  # a write in flight during a refresh still matches
        Users(api.engine).set_password(account.id, "a brand new password")
        refreshed = http.post("/api/v1/session/refresh", headers={"X-CSRF-Token": token})
        assert error_of(refreshed)[:2] == (401, "revoked_refresh_token")


def test_pages_carry_a_strict_content_security_policy(api):
    with api.client() as http:
        page = http.get("/videos")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_an_unexpected_error_on_a_page_is_a_readable_html_500_without_a_trace():
    """The last-resort middleware, in process: a page address gets the HTML page, the API its JSON."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from api.errors import UnhandledErrors

    def broken(request):
        raise RuntimeError("row values that must not be shown: secret-prompt")

    # As in api.app.create_app: inside Starlette's own error middleware, around the routes.
    app = Starlette(routes=[Route("/videos", broken), Route("/api/v1/jobs", broken)],
                    middleware=[Middleware(UnhandledErrors)])

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            return await http.get(path)

    page, api_answer = asyncio.run(get("/videos")), asyncio.run(get("/api/v1/jobs"))
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in page.text and "secret-prompt" not in page.text and "Traceback" not in page.text
    assert api_answer.status_code == 500 and api_answer.json() == {"error": {"code": "internal_error",
                                                                             "message": "internal error"}}
