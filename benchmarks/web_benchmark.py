"""The web app's "My videos" page with 1,000 jobs in the account, in Debian's Chromium (Playwright).

    .venv/bin/python -m benchmarks.web_benchmark [--loads 15] [--jobs 1000]

Measured per load, each in a fresh browser context (cold HTTP cache, the session cookies kept):
- first contentful paint (the browser's ``paint`` timing);
- interactive: the page's ``vg-ready`` performance mark, set once the grid is rendered from the API's
  answer and its handlers attached;
- page weight: the JavaScript and CSS the page loaded (decoded bytes, from resource timing).

Baseline, measured in the same run the same way: the app's 404 page (the same server, the same
stylesheet, no script and no API call), the floor of any page this server serves. Targets (issue 10):
interactive under 1 s, JavaScript + CSS under 300 KB. Medians are quoted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks.api_benchmark import api_server, create_database, postgres, wait_for

TARGET_INTERACTIVE_S, TARGET_WEIGHT_KB = 1.0, 300.0
PASSWORD = "benchmark password 1"


def seed_account(app_url: str, storage: Path, jobs_wanted: int) -> str:
    """An account with ``jobs_wanted`` succeeded jobs whose thumbnails are real PNG files in the bucket."""
    from PIL import Image

    from videogen.accounts.users import Users
    from videogen.db.schema import jobs

    engine = sa.create_engine(app_url)
    user = Users(engine).create("bench@example.com", PASSWORD)
    thumb = storage / "bench" / "thumb.png"
    thumb.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 80, 40)).save(thumb)
    start = datetime.now(UTC) - timedelta(days=30)
    rows = [{"user_id": user["id"], "prompt": f"benchmark video {i}: a fox running through snow at dusk",
             "status": "succeeded", "stage": "done", "progress": 1.0, "width": "64", "height": "64",
             "num_frames": "9", "fps": "8", "steps": "4", "seed": str(i),
             "created_at": start + timedelta(minutes=40 * i), "finished_at": start + timedelta(minutes=40 * i + 1),
             "thumbnail_uri": thumb.as_uri(), "output_uri": thumb.as_uri()} for i in range(jobs_wanted)]
    with engine.begin() as conn:
        conn.execute(jobs.insert(), rows)
    engine.dispose()
    return user["email"]


def measure(browser, base_url: str, path: str, state: dict, loads: int, wait_ready: bool) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"paint_s": [], "ready_s": [], "weight_kb": [], "cards": []}
    for _ in range(loads):
        context = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base_url + path)
        if wait_ready:
            page.wait_for_selector("body[data-ready=true]")
        wait_for(lambda: page.evaluate("performance.getEntriesByName('first-contentful-paint').length"), 30,
                 "the first contentful paint")
        timing = page.evaluate("""() => ({
            paint: performance.getEntriesByName('first-contentful-paint')[0].startTime,
            ready: (performance.getEntriesByName('vg-ready')[0] || {startTime: null}).startTime,
            weight: performance.getEntriesByType('resource')
                .filter((r) => /\\.(js|css)(\\?|$)/.test(r.name)).reduce((sum, r) => sum + r.decodedBodySize, 0),
            cards: document.querySelectorAll('.card').length,
        })""")
        if wait_ready and timing["cards"] == 0:  # an error page is "ready" too: it must not count
            raise RuntimeError(f"{path} rendered no video: {page.inner_text('main')[:200]}")
        samples["paint_s"].append(timing["paint"] / 1000)
        if timing["ready"] is not None:
            samples["ready_s"].append(timing["ready"] / 1000)
        samples["weight_kb"].append(timing["weight"] / 1024)
        samples["cards"].append(timing["cards"])
        context.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from tests.web.conftest import CHROMIUM_ARGS, chromium_path

    with tempfile.TemporaryDirectory(prefix="videogen-web-bench-") as tmp, postgres(Path(tmp)) as pg:
        work = Path(tmp)
        app_url = create_database(pg.admin_url, migrate=True)
        email = seed_account(app_url, work / "storage", args.jobs)
        with api_server(app_url, work, workers=1) as api, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            version = browser.version
            signer = browser.new_context()
            page = signer.new_page()
            page.goto(api.url + "/login")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(api.url + "/videos")
            state = signer.storage_state()
            signer.close()
            measure(browser, api.url, "/videos", state, 2, True)  # warm the server's pools and caches
            videos = measure(browser, api.url, "/videos", state, args.loads, True)
            floor = measure(browser, api.url, "/no-such-page", state, args.loads, False)
            browser.close()

    med = statistics.median
    print(f"web app \"My videos\", {args.jobs} jobs in the account, {args.loads} cold loads each "
          f"(fresh browser context), Chromium {version}; medians")
    print(f"{'':32}{'My videos':>12}{'404 page (baseline)':>22}{'ratio':>8}{'target':>10}")
    print(f"{'first contentful paint (s)':32}{med(videos['paint_s']):12.3f}{med(floor['paint_s']):22.3f}"
          f"{med(videos['paint_s']) / med(floor['paint_s']):8.2f}")
    print(f"{'interactive, grid rendered (s)':32}{med(videos['ready_s']):12.3f}{'—':>22}{'':8}"
          f"{'< ' + str(TARGET_INTERACTIVE_S):>10}")
    print(f"{'JavaScript + CSS (KB)':32}{med(videos['weight_kb']):12.1f}{med(floor['weight_kb']):22.1f}{'':8}"
          f"{'< ' + str(int(TARGET_WEIGHT_KB)):>10}")
    print(f"{'cards on the first page':32}{med(videos['cards']):12.0f}")
    met = med(videos["ready_s"]) < TARGET_INTERACTIVE_S and med(videos["weight_kb"]) < TARGET_WEIGHT_KB
    print("targets met" if met else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
