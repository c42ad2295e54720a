"""Browser tests: Debian's Chromium, driven by Playwright, against a real ``videogen serve-api``.

Each test gets a fresh browser context (its own cookies); every console error and uncaught page
error is recorded on the :class:`Tab`. Screenshots go to ``test-artifacts/web/`` for a reviewer.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.conftest import PASSWORD, ApiServer, api, make_account  # noqa: F401 - fixtures shared

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
# As the machine's notes say: without the background-networking flags Chromium keeps trying hosts
# this closed network refuses. --no-sandbox because the tests run as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
VIDEO_PAGE = re.compile(r".*/videos/\d+$")


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("Chromium is not installed: scripts/bootstrap.sh installs Debian's chromium package")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> Page:
        """Go to a page of the app and wait until its script has rendered it."""
        self.page.goto(self.base_url + path)
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        page = self.open("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(self.base_url + "/videos")
        page.wait_for_selector("body[data-ready=true]")

    def fetch(self, method: str, path: str, body: dict | None = None) -> dict:
        """A request from the page itself, as its scripts send them (cookie, CSRF header)."""
        return self.page.evaluate(
            """async ([method, path, body]) => {
                const csrf = document.cookie.split("; ").find((c) => c.startsWith("vg_csrf=")) || "";
                const response = await fetch(path, {method, credentials: "same-origin",
                    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf.slice(8)},
                    body: body === null ? undefined : JSON.stringify(body)});
                return {status: response.status, body: await response.json().catch(() => null)};
            }""", [method, path, body])


def record_errors(page: Page, errors: list[str]) -> None:
    page.on("console", lambda message: errors.append(f"console: {message.text} ({page.url})")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error} ({page.url})"))


@pytest.fixture
def tab_factory(browser: Browser, api: ApiServer):  # noqa: F811 - the shared fixture
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page, api.url)
        record_errors(page, tab.errors)
        return tab

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def tab(tab_factory) -> Tab:
    return tab_factory()
