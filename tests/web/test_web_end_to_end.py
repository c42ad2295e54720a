"""The whole path as a person takes it, in a real browser: sign up, submit from the form, watch the
progress bar move over the SSE stream, play the video, download it — with the real Dagster daemon
generating through the test run's Ray Serve app."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.api.conftest import PASSWORD, start_api
from tests.waiting import wait_until
from tests.test_end_to_end import daemon_env, running_daemon
from tests.web.conftest import VIDEO_PAGE, Tab, record_errors
from videogen.accounts.credits import CreditLedger
from videogen.devtools.processes import stop_session

FRAMES, FPS, STEPS = 9, 8, 30


@pytest.fixture
def stack(admin_url, tmp_path, serve_app):
    """The API over a daemon's database and bucket folder; the daemon itself is started by the test."""
    env = daemon_env(admin_url, tmp_path, serve_app["url"])
    home = Path(env["VIDEOGEN_HOME"])
    process, url, log = start_api(env["DATABASE_URL"], tmp_path / "api", jwt_secret=secrets.token_hex(32),
                                  extra_env={"VIDEOGEN_HOME": str(home), "VIDEOGEN_STORAGE_ROOT": str(home / "storage")})
    engine = sa.create_engine(env["DATABASE_URL"])
    try:
        yield {"env": env, "url": url, "engine": engine, "api_log": log, "daemon_log": tmp_path / "daemon.log"}
    finally:
        stop_session(process, grace_s=20)
        engine.dispose()


def test_sign_up_submit_watch_play_and_download(stack, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        watch_the_whole_path(stack, Tab(context.new_page(), stack["url"]), tmp_path)
    finally:
        context.close()


def watch_the_whole_path(stack, tab: Tab, tmp_path: Path) -> None:
    record_errors(tab.page, tab.errors)
    email = f"viewer-{secrets.token_hex(4)}@example.com"
    page = tab.open("/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(stack["url"] + "/videos")
    with stack["engine"].connect() as conn:
        user_id = conn.execute(sa.text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar_one()
    CreditLedger(stack["engine"]).grant(user_id, "10", by="test")

    page = tab.open("/videos/new")
    page.get_by_label("Prompt", exact=True).fill("a red fox running in snow")
    page.get_by_label("Denoising steps").fill(str(STEPS))
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(VIDEO_PAGE)
    page.wait_for_selector("body[data-ready=true]")
    job_id = int(page.url.rsplit("/", 1)[1])
    # No daemon yet: the job is certainly still pending, with the bar at 0, when watching starts.
    assert page.locator("#status").inner_text() == "pending" and page.locator("#progress").get_attribute("value") == "0"
    page.evaluate("""() => {
        window.seen = {progress: [0], status: ["pending"]};
        new MutationObserver(() => window.seen.progress.push(Number(document.querySelector('#progress').value)))
            .observe(document.querySelector('#progress'), {attributes: true});
        new MutationObserver(() => window.seen.status.push(document.querySelector('#status').textContent))
            .observe(document.querySelector('#status'), {childList: true, characterData: true, subtree: true});
    }""")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads or navigates

    with running_daemon(stack["env"], stack["daemon_log"]):
        page.locator("#status", has_text="succeeded").wait_for(timeout=600_000)
        # (Playwright's wait_for_function evaluates a string, which the pages' CSP forbids: poll instead.)
        wait_until(lambda: page.evaluate("document.querySelector('#player').readyState") >= 2, 60,
                   "the player to have the video's first frames")
    tab.shot("video-succeeded")

    seen = page.evaluate("window.seen")
    statuses = [s for i, s in enumerate(seen["status"]) if i == 0 or s != seen["status"][i - 1]]
    assert statuses[0] == "pending" and statuses[-1] == "succeeded", statuses
    assert seen["progress"][0] == 0 and seen["progress"][-1] == 100, seen["progress"]
    assert seen["progress"] == sorted(seen["progress"]), seen["progress"]  # it only moves forward
    assert page.evaluate("window.sameDocument === true")  # updated live, never reloaded
    duration = page.evaluate("document.querySelector('#player').duration")
    assert duration == pytest.approx(FRAMES / FPS, abs=1e-3)

    with page.expect_download() as started:
        page.get_by_role("link", name="Download").click()
    saved = tmp_path / "download.mp4"
    started.value.save_as(saved)
    with stack["engine"].connect() as conn:
        row = conn.execute(sa.text("SELECT status, output_sha256, user_id FROM jobs WHERE id = :j"),
                           {"j": job_id}).mappings().one()
    assert row["status"] == "succeeded" and row["user_id"] == user_id
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == row["output_sha256"]
    assert page.locator("#meta").get_by_text("a red fox running in snow").count() == 1
    assert "done" in page.locator("#trail").inner_text()
    assert tab.errors == [], tab.errors
