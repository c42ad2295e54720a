"""The web app in a real browser, against the real API and PostgreSQL (no daemon: jobs stay pending).

Every page is used as a person would: labels, buttons, the keyboard; what a page shows is checked
against the database; screenshots of each page land in test-artifacts/web/.
"""

from __future__ import annotations

import secrets
from datetime import date

import sqlalchemy as sa
from playwright.sync_api import expect

from tests.api.conftest import PASSWORD, make_account
from tests.api.test_kpis_api import kpi_row
from tests.test_validation import BAD_REQUESTS
from tests.web.conftest import VIDEO_PAGE
from videogen.accounts.credits import CreditLedger
from videogen.kpi.tables import kpi_spark_daily, kpi_spark_daily_by_model

PAGES = ["/videos", "/videos/new", "/videos/new-film", "/account", "/admin/users", "/admin/jobs"]


def jobs_of(api, user_id: str) -> list[dict]:
    with api.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM jobs WHERE user_id = :u ORDER BY id"),
                                              {"u": user_id}).mappings()]


def user_id_of(api, email: str) -> str:
    with api.engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar_one()


def submit_through_the_api(api, account, prompt: str = "a fox in the snow") -> int:
    with api.client(**account.headers) as http:
        answer = http.post("/api/v1/jobs", json={"prompt": prompt})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]


def test_sign_up_submit_from_the_form_and_find_the_job_in_my_videos(api, tab):
    email = f"new-{secrets.token_hex(4)}@example.com"
    page = tab.open("/signup")
    tab.shot("signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(api.url + "/videos")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#empty").is_visible() and page.locator("#who-email").inner_text() == email
    CreditLedger(api.engine).grant(user_id_of(api, email), "5", by="test")

    page = tab.open("/videos/new")
    page.get_by_label("Prompt", exact=True).fill("a red fox running in snow")
    page.get_by_label("Frames", exact=True).fill("17")
    # The price, before submitting: 17 frames × 64 × 64 px × 4 steps / 1e6, rounded up.
    expect(page.locator("#cost")).to_have_text("Cost: 0.2786 credits (balance 5.0000)")
    tab.shot("new-video")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(VIDEO_PAGE)
    page.wait_for_selector("body[data-ready=true]")
    [job] = jobs_of(api, user_id_of(api, email))
    assert page.url.endswith(f"/videos/{job['id']}")
    assert (job["prompt"], job["num_frames"], job["status"]) == ("a red fox running in snow", "17", "pending")
    assert page.locator("#status").inner_text() == "pending"
    assert page.locator("#who-balance").inner_text() == "4.7214 credits"
    tab.shot("video-pending")

    page = tab.open("/videos")
    card = page.locator(".card")
    assert card.count() == 1 and "pending" in card.inner_text() and "a red fox running in snow" in card.inner_text()
    card.get_by_role("link").click()
    page.wait_for_url(api.url + f"/videos/{job['id']}")
    assert tab.errors == []


def test_every_bad_input_of_the_corpus_shows_the_api_message_at_its_field_and_makes_no_job(api, tab):
    account = make_account(api)
    tab.sign_in(account.email)
    page = tab.open("/videos/new")
    typed = [(fields, code, words) for fields, code, words in BAD_REQUESTS
             if not any(isinstance(v, bytes) for v in fields.values())]  # bytes cannot be typed
    assert len(typed) == len(BAD_REQUESTS) - 1
    for fields, code, words in typed:
        for name in ("prompt", "negative_prompt", "model", "width", "height", "num_frames", "fps", "steps",
                     "guidance_scale", "seed", "quality_preset"):
            page.locator(f"#{name}").fill(fields.get(name, ""))
        page.get_by_role("button", name="Generate").click()
        field = next((name for name in fields if name != "prompt"), "prompt")
        message = page.locator(f"#{field}-error")
        expect(message).to_contain_text(words)  # waits: the previous case's message may still be there
        assert page.locator(f"#{field}").get_attribute("aria-invalid") == "true"
        assert page.locator(".field-error:not(:empty)").count() == 1  # next to its field, and only there
        if code == "invalid_width":
            tab.shot("new-video-invalid-width")
    assert jobs_of(api, account.id) == []
    assert page.url == api.url + "/videos/new"
    # Quotes and submits answer 200 with the verdict: a person's mistakes are no console errors.
    assert tab.errors == []


def test_another_user_cannot_see_my_video_and_support_reads_without_write_buttons(api, tab_factory):
    owner, other, support = make_account(api), make_account(api), make_account(api, "support", None)
    job_id = submit_through_the_api(api, owner)

    other_tab = tab_factory()
    other_tab.sign_in(other.email)
    page = other_tab.open(f"/videos/{job_id}")
    assert page.locator("h1").inner_text() == "Not found"
    assert f"job {job_id} does not exist" in page.locator("main").inner_text()
    page = other_tab.open("/videos")
    assert page.locator(".card").count() == 0
    other_tab.shot("video-of-another-user")

    staff = tab_factory()
    staff.sign_in(support.email)
    page = staff.open(f"/videos/{job_id}")
    assert page.locator("#status").inner_text() == "pending"
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.get_by_role("link", name="New video").count() == 0
    staff.shot("video-as-support")
    page = staff.open("/account")
    assert page.get_by_role("button", name="Create key").count() == 0
    assert page.get_by_role("button", name="Create a new secret").count() == 0
    page = staff.open("/videos/new")
    assert "support accounts are read-only" in page.locator("main").inner_text()
    failed_id = submit_through_the_api(api, owner, "a fox that fails")
    with api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = 'failed', error_code = 'out_of_memory' WHERE id = :j"),
                     {"j": failed_id})
    page = staff.open("/admin/jobs")
    assert f"#{failed_id}" in page.locator("#failed").inner_text()
    assert page.get_by_role("button", name=f"Retry job {failed_id}").count() == 0
    page = staff.open("/admin/users")
    assert owner.email in page.locator("#users").inner_text()
    assert page.locator("#users input, #users select, #users button").count() == 0
    # The buttons are gone, and the API refuses the writes anyway.
    refused = staff.fetch("POST", f"/api/v1/jobs/{job_id}/cancel")
    assert refused["status"] == 403 and refused["body"]["error"]["code"] == "read_only_role"
    refused = staff.fetch("POST", "/api/v1/jobs", {"prompt": "a fox"})
    assert refused["status"] == 403
    assert jobs_of(api, support.id) == [] and jobs_of(api, owner.id)[0]["status"] == "pending"


def test_the_kpi_page_charts_the_numbers_of_kpi_spark_daily(api, tab_factory):
    rows = [
        kpi_row(date(2022, 6, 1), total_jobs=7, succeeded_jobs=4, failed_jobs=1, rejected_jobs=1, canceled_jobs=0,
                success_rate=0.8, median_duration_s=10.5, p95_duration_s=18.25, credits_consumed=1.25,
                gpu_seconds=7200.0),
        kpi_row(date(2022, 6, 2), total_jobs=3, succeeded_jobs=3, success_rate=1.0, median_duration_s=9.0,
                p95_duration_s=9.5, credits_consumed=0.4425, gpu_seconds=1800.0),
        kpi_row(date(2022, 6, 4), total_jobs=2, failed_jobs=2, success_rate=0.0, credits_consumed=0,
                gpu_seconds=0.0),
    ]
    with api.engine.begin() as conn:
        conn.execute(kpi_spark_daily.insert(), rows)
    by_model = [{"job_date": date(2022, 6, 1), "model": model, "jobs": jobs, "succeeded_jobs": 0, "failed_jobs": 0,
                 "success_rate": None, "median_duration_s": None, "p95_duration_s": None, "gpu_seconds": 0.0,
                 "credits_consumed": 0, "computed_at": rows[0]["computed_at"]} for model, jobs in (("tiny", 5), ("tiny-b", 2))]
    with api.engine.begin() as conn:
        conn.execute(kpi_spark_daily_by_model.insert(), by_model)
    admin = make_account(api, "admin", None)
    tab = tab_factory()
    tab.sign_in(admin.email)
    page = tab.open("/admin/kpis?from=2022-06-01&to=2022-06-05")
    tab.shot("admin-kpis")

    def bars(chart: str, series: str) -> dict[str, float]:
        found = page.locator(f"#{chart} rect[data-series={series}]")
        return {found.nth(i).get_attribute("data-day"): float(found.nth(i).get_attribute("data-value"))
                for i in range(found.count())}

    with api.engine.connect() as conn:
        stored = {str(r["job_date"]): r for r in conn.execute(
            sa.select(kpi_spark_daily).where(kpi_spark_daily.c.job_date.between(date(2022, 6, 1), date(2022, 6, 5)))
        ).mappings()}
    assert sorted(stored) == ["2022-06-01", "2022-06-02", "2022-06-04"]
    for series, column in (("succeeded", "succeeded_jobs"), ("failed", "failed_jobs"),
                           ("rejected", "rejected_jobs"), ("canceled", "canceled_jobs")):
        assert bars("chart-jobs", series) == {day: float(row[column]) for day, row in stored.items()}
    assert bars("chart-success", "success_rate") == {d: round(r["success_rate"] * 100, 1) for d, r in stored.items()}
    assert bars("chart-credits", "credits_consumed") == {d: float(r["credits_consumed"]) for d, r in stored.items()}
    assert bars("chart-gpu", "gpu_hours") == {d: round(r["gpu_seconds"] / 3600, 4) for d, r in stored.items()}
    assert bars("chart-duration", "p95_duration_s") == {d: r["p95_duration_s"] for d, r in stored.items()
                                                        if r["p95_duration_s"] is not None}
    assert page.locator("#kpi-table tbody tr").count() == 3
    assert bars("chart-models", "tiny") == {"2022-06-01": 5.0} and bars("chart-models", "tiny-b") == {"2022-06-01": 2.0}
    assert page.locator("#model-table tbody tr").count() == 2
    assert tab.errors == []

    user = make_account(api)
    user_tab = tab_factory()
    user_tab.sign_in(user.email)
    page = user_tab.open("/admin/kpis")
    assert page.locator("h1").inner_text() == "Not allowed"
    assert "needs the admin or support role" in page.locator("main").inner_text()


def test_admin_grants_credits_and_retries_from_the_admin_pages(api, tab_factory):
    admin, customer = make_account(api, "admin", None), make_account(api, credits="1")
    tab = tab_factory()
    tab.sign_in(admin.email)
    page = tab.open("/admin/users")
    page.get_by_label(f"Credits to grant to {customer.email}").fill("2.5")
    page.get_by_label(f"Credits to grant to {customer.email}").press("Enter")
    row = page.locator("#users tr", has_text=customer.email)
    row.get_by_text("3.5000").wait_for()
    tab.shot("admin-users")
    with api.engine.connect() as conn:
        assert str(conn.execute(sa.text("SELECT credit_balance FROM users WHERE id = :u"),
                                {"u": customer.id}).scalar_one()) == "3.5000"

    job_id = submit_through_the_api(api, customer)
    with api.client(**customer.headers) as http:
        assert http.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    with api.engine.begin() as conn:  # as a run would leave it
        conn.execute(sa.text("UPDATE jobs SET status = 'failed', error_code = 'out_of_memory', "
                             "error_message = 'CUDA out of memory' WHERE id = :j"), {"j": job_id})
    page = tab.open("/admin/jobs")
    assert "out_of_memory: CUDA out of memory" in page.locator("#failed").inner_text()
    tab.shot("admin-failed-jobs")
    page.get_by_role("button", name=f"Retry job {job_id}").click()
    page.get_by_role("button", name=f"Retry job {job_id}").wait_for(state="detached")
    assert jobs_of(api, customer.id)[0]["status"] == "pending"
    assert tab.errors == []


def test_api_keys_are_shown_once_and_can_be_revoked(api, tab):
    account = make_account(api)
    tab.sign_in(account.email)
    page = tab.open("/account")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    page.locator("#new-key code").wait_for()
    key = page.locator("#new-key code").inner_text()
    assert key.startswith("vg_")
    with api.client(**{"X-API-Key": key}) as http:
        assert http.get("/api/v1/me").json()["user"]["email"] == account.email
    tab.shot("account")
    page.get_by_role("button", name="Revoke key laptop").click()
    page.locator("#keys tr", has_text="laptop").get_by_text("revoked").wait_for()
    with api.client(**{"X-API-Key": key}) as http:
        assert http.get("/api/v1/me").status_code == 401
    page = tab.open("/account")
    assert key not in page.content()  # shown once
    assert tab.errors == []


def test_every_page_fits_a_phone_and_works_from_the_keyboard(api, tab_factory):
    admin = make_account(api, "admin", "3")
    job_id = submit_through_the_api(api, admin)
    for _ in range(3):
        make_account(api)
    with api.engine.begin() as conn:  # full tables and charts, not empty pages
        conn.execute(kpi_spark_daily.insert(), [
            kpi_row(date(2023, 1, day), total_jobs=day * 40, succeeded_jobs=day * 30, failed_jobs=day * 5,
                    success_rate=0.857, median_duration_s=12.25, p95_duration_s=31.5,
                    credits_consumed=123.4567, gpu_seconds=86400.0) for day in range(1, 29)])
    phone = tab_factory(width=375, height=740)
    page = phone.open("/login")
    # Keyboard only: the skip link first, then the form's fields in order, Enter submits.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # the skip link moves focus to the page's content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(admin.email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(api.url + "/videos")
    for path in [*PAGES, f"/videos/{job_id}", "/admin/kpis?from=2023-01-01&to=2023-01-31"]:
        page = phone.open(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
        unlabeled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
            .filter((i) => i.type !== 'hidden' && !(i.labels && i.labels.length) && !i.getAttribute('aria-label'))
            .map((i) => i.id || i.name)""")
        assert unlabeled == [], (path, unlabeled)
        phone.shot("phone" + path.split("?")[0].replace("/", "-"))
    assert phone.errors == []


def test_error_pages_are_readable_and_never_a_stack_trace(api, tab):
    for path, heading in (("/no-such-page", "Page not found"), ("/videos/not-a-number", "Page not found"),
                          ("/static/missing.js", "Page not found")):
        response = tab.page.goto(api.url + path)
        assert response.status == 404 and response.headers["content-type"].startswith("text/html")
        assert tab.page.locator("h1").inner_text() == heading
        assert "Traceback" not in tab.page.content()
    tab.shot("error-404")
    # The API keeps its JSON errors.
    answer = tab.page.goto(api.url + "/api/v1/no-such-route")
    assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"


def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_the_site(api, tab_factory):
    account = make_account(api)
    # A backslash or a tab after the first slash makes the browser read another host: dropped too.
    for asked, landed in (("/account?x=1", "/account?x=1"), ("/%5Cevil.example/", "/videos"),
                          ("/%09/evil.example", "/videos"), ("https://evil.example/", "/videos"),
                          ("//evil.example/x", "/videos")):
        tab = tab_factory()
        page = tab.open(f"/login?next={asked}")
        page.get_by_label("Email").fill(account.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        assert page.url.startswith(api.url + "/"), (asked, page.url)
        assert page.url == api.url + landed, (asked, page.url)


def test_sign_out_ends_the_session(api, tab):
    account = make_account(api)
    tab.sign_in(account.email)
    tab.page.get_by_role("button", name="Sign out").click()
    tab.page.wait_for_url(api.url + "/login")
    page = tab.open("/account")
    assert page.url.startswith(api.url + "/login?next=")
    assert tab.errors == []  # a visitor without a session goes to the sign-in page without a 401
    assert tab.fetch("GET", "/api/v1/me")["status"] == 401


def test_two_tabs_refreshing_an_expired_session_at_once_keep_it(api, tab):
    """The refresh token rotates and one spent twice ends the session: the tabs take turns (a lock
    across tabs), and the second sees the first's new cookies instead of spending the old token."""
    account = make_account(api)
    tab.sign_in(account.email)
    context = tab.page.context
    second = context.new_page()
    second.goto(api.url + "/videos")
    second.wait_for_selector("body[data-ready=true]")
    expired = next(c for c in context.cookies() if c["name"] == "vg_session")
    context.add_cookies([{**expired, "value": "1"}])  # as if the access cookie had expired
    refresh = "import('/static/app.js').then((app) => app.refreshSession())"
    first_done = tab.page.evaluate_handle(refresh)
    assert second.evaluate(refresh) is True
    assert first_done.json_value() is True
    assert tab.fetch("GET", "/api/v1/me")["status"] == 200
    with api.engine.connect() as conn:
        revoked = conn.execute(sa.text("SELECT count(*) FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NOT NULL"),
                               {"u": account.id}).scalar_one()
    assert revoked == 0  # no token was spent twice
