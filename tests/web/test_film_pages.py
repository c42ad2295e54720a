"""Films and spoken prompts in a real browser, against the real API and PostgreSQL (no daemon: jobs
stay pending; a finished film's outputs are put in the server's storage folder as a run leaves them).

The New film page: the scenes editor, the price of the storyboard, a scene's bad field shown next to
that scene's input, the storyboard the form holds submitted as is. New video: a recording made with
flite uploaded as the prompt, a silent one refused with the API's message. The video page of a film:
its scenes with their thumbnails, the subtitles as downloads and as the player's track.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.api.conftest import make_account
from tests.api.test_privacy import finished_job
from tests.waiting import wait_until
from tests.web.conftest import VIDEO_PAGE
from tests.web.test_pages import jobs_of
from videogen.config import DEFAULT_BUCKET
from videogen.film.voices import VoiceRegistry, synthesize
from videogen.storage.job_outputs import job_key
from videogen.storage.local import LocalObjectStorage

VTT = "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\nThe fox wakes.\n\n2\n00:00:02.000 --> 00:00:03.000\nIt runs.\n"
SRT = "1\n00:00:00,000 --> 00:00:01,500\nThe fox wakes.\n\n2\n00:00:02,000 --> 00:00:03,000\nIt runs.\n"
SILENCE = "the audio prompt is silent; record the prompt again, closer to the microphone"


def scene_input(page, index: int, field: str):
    """A scene row's input, found as a person finds it: by the scene's legend and the input's label."""
    return page.get_by_role("group", name=f"Scene {index + 1}").get_by_label(field, exact=True)


def fill_scene(page, index: int, prompt: str, duration: str, narration: str = "", transition: str = "cut") -> None:
    scene_input(page, index, "Prompt").fill(prompt)
    scene_input(page, index, "Duration (seconds)").fill(duration)
    scene_input(page, index, "Narration").fill(narration)
    scene_input(page, index, "Transition to the next scene").select_option(transition)


def test_the_film_form_prices_the_storyboard_and_submits_what_it_holds(api, tab):
    account = make_account(api)
    tab.sign_in(account.email)
    tab.page.get_by_role("navigation", name="Main").get_by_role("link", name="New film").click()
    tab.page.wait_for_url(api.url + "/videos/new-film")
    page = tab.page
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_role("group", name="Scene 1").count() == 1  # the form starts with one scene
    page.get_by_label("Title", exact=True).fill("The fox's day")
    fill_scene(page, 0, "a fox wakes", "1", "The fox wakes.")
    # Priced at its narration's estimated length (14 characters at 10 a second + 0.5 s = 1.9 s) at the tiny
    # model's 8 fps → 15 frames shown, 17 generated: 17 × 64 × 64 × 4 / 1e6 = 0.2786 credits.
    expect(page.locator("#cost")).to_have_text("Cost: 0.2786 credits (balance 100.0000)")
    page.get_by_role("button", name="Add a scene").click()
    fill_scene(page, 1, "a fox runs", "2", "It runs.", "crossfade")
    # 2 s (its narration is shorter) → 16 shown, 17 generated: 0.2786 more (a crossfade out of the last
    # scene adds nothing).
    expect(page.locator("#cost")).to_have_text("Cost: 0.5572 credits (balance 100.0000)")
    page.get_by_role("button", name="Add a scene").click()
    fill_scene(page, 2, "a fox sleeps", "1.5")
    page.get_by_role("button", name="Move scene 3 up").click()  # now between the other two
    assert scene_input(page, 1, "Prompt").input_value() == "a fox sleeps"
    assert scene_input(page, 2, "Prompt").input_value() == "a fox runs"
    assert scene_input(page, 2, "Transition to the next scene").input_value() == "crossfade"
    assert page.get_by_role("button", name="Move scene 1 up").is_disabled()
    assert page.get_by_role("button", name="Move scene 3 down").is_disabled()
    # 1.5 s → 12 shown, 17 generated (8k+1): 0.2786.
    expect(page.locator("#cost")).to_have_text("Cost: 0.8358 credits (balance 100.0000)")
    page.get_by_role("button", name="Add a scene").click()
    page.get_by_role("button", name="Remove scene 4").click()
    assert page.locator("#scenes > li").count() == 3
    page.get_by_label("Voice", exact=True).select_option("rms")
    page.get_by_label("Music", exact=True).select_option("generated")
    page.get_by_label("Subtitles", exact=True).select_option("sidecar")
    page.get_by_label("Seed", exact=True).fill("7")
    tab.shot("new-film")
    page.get_by_role("button", name="Make the film").click()
    page.wait_for_url(VIDEO_PAGE)
    page.wait_for_selector("body[data-ready=true]")

    [job] = jobs_of(api, account.id)
    assert page.url.endswith(f"/videos/{job['id']}")
    assert job["storyboard"] == {
        "scenes": [{"prompt": "a fox wakes", "duration_s": 1, "transition": "cut", "narration": "The fox wakes."},
                   {"prompt": "a fox sleeps", "duration_s": 1.5, "transition": "cut"},
                   {"prompt": "a fox runs", "duration_s": 2, "transition": "crossfade", "narration": "It runs."}],
        "voice": "rms", "subtitles": "sidecar", "music": "generated"}
    assert (job["prompt"], job["seed"], job["status"]) == ("The fox's day", "7", "pending")
    assert page.locator("#who-balance").inner_text() == "99.1642 credits"  # the price shown, reserved
    # The video page of the waiting film: its scenes, in order, without thumbnails yet.
    scenes = page.locator("#film-scenes > li")
    assert scenes.count() == 3 and page.locator("#film-scenes img").count() == 0
    assert scenes.nth(1).locator("dd").all_inner_texts() == ["2", "a fox sleeps", "1.5 s", "—", "cut"]
    assert scenes.nth(2).locator("dd").all_inner_texts() == ["3", "a fox runs", "2 s", "It runs.", "crossfade"]
    meta = dict(zip(page.locator("#meta dt").all_inner_texts(), page.locator("#meta dd").all_inner_texts()))
    assert (meta["Title"], meta["Scenes"], meta["Voice"], meta["Music"], meta["Subtitles"], meta["Seed"]) == (
        "The fox's day", "3", "rms", "generated", "sidecar", "7")
    tab.shot("film-pending")
    assert tab.errors == []


def test_a_bad_scene_field_is_shown_next_to_that_scenes_input_and_makes_no_job(api, tab):
    account = make_account(api)
    tab.sign_in(account.email)
    page = tab.open("/videos/new-film")
    fill_scene(page, 0, "a fox wakes", "1", "The fox wakes.")
    page.get_by_role("button", name="Add a scene").click()
    fill_scene(page, 1, "a fox runs", "-1")
    make = page.get_by_role("button", name="Make the film")
    for typed, message in (("-1", "-1 is out of range: allowed 0.5 to 20 seconds"),
                           ("two", "must be a number, got 'two'"),
                           ("", "is missing: say how many seconds the scene lasts")):
        scene_input(page, 1, "Duration (seconds)").fill(typed)
        make.click()
        slot = page.locator("#storyboard\\.scenes\\[1\\]\\.duration_s-error")
        expect(slot).to_have_text(message)
        assert scene_input(page, 1, "Duration (seconds)").get_attribute("aria-invalid") == "true"
        assert page.locator(".field-error:not(:empty)").count() == 1  # next to that input, and only there
        assert page.locator("#cost").inner_text() == ""  # no price for a film that cannot be made
        if typed == "-1":
            tab.shot("new-film-bad-duration")
    scene_input(page, 1, "Duration (seconds)").fill("2")
    page.get_by_label("Subtitles", exact=True).select_option("burned")
    scene_input(page, 0, "Narration").fill("")
    make.click()
    expect(page.locator("#storyboard\\.subtitles-error")).to_have_text(
        "are made from the narration, and no scene has any")
    assert page.locator(".field-error:not(:empty)").count() == 1
    page.get_by_role("button", name="Remove scene 2").click()
    page.get_by_role("button", name="Remove scene 1").click()
    make.click()
    expect(page.locator("#storyboard\\.scenes-error")).to_have_text("is empty; a film needs at least one scene")
    # Music from a file: none chosen is said before anything is sent.
    page.get_by_role("button", name="Add a scene").click()
    fill_scene(page, 0, "a fox wakes", "1", "The fox wakes.")
    page.get_by_label("Music", exact=True).select_option("upload")
    make.click()
    expect(page.locator("#storyboard\\.music\\.key-error")).to_have_text("Choose the music file, or another music.")
    assert jobs_of(api, account.id) == []
    assert page.url == api.url + "/videos/new-film"
    assert tab.errors == []  # quotes answer 200 with the verdict: a person's mistakes are no console errors


def test_a_music_file_is_uploaded_and_named_in_the_storyboard(api, tab, tmp_path):
    account = make_account(api)
    tab.sign_in(account.email)
    page = tab.open("/videos/new-film")
    fill_scene(page, 0, "a fox in the snow", "1")
    theme = tmp_path / "theme.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(theme)], check=True)
    page.get_by_label("Music", exact=True).select_option("upload")
    page.get_by_label("Music file", exact=True).set_input_files(str(theme))
    expect(page.locator("#storyboard\\.music\\.key-status")).to_have_text("theme.mp3 is ready.")
    page.get_by_role("button", name="Make the film").click()
    page.wait_for_url(VIDEO_PAGE)
    [job] = jobs_of(api, account.id)
    key = job["storyboard"]["music"]["key"]
    assert key.startswith(f"uploads/{account.id}/music-") and key.endswith(".mp3")
    assert LocalObjectStorage(root=api.home / "storage", bucket=DEFAULT_BUCKET).exists(key)
    assert tab.errors == []


def test_a_spoken_prompt_is_uploaded_and_becomes_a_job_with_its_key(api, tab, tmp_path):
    account = make_account(api)
    speech = synthesize("a red fox running in snow", VoiceRegistry.from_file(None).get("rms"), tmp_path / "fox.wav")
    tab.sign_in(account.email)
    page = tab.open("/videos/new")
    page.get_by_label("Or speak the prompt", exact=True).set_input_files(str(speech.path))
    expect(page.locator("#audio_prompt-status")).to_have_text("fox.wav is ready: its words become the prompt.")
    assert page.get_by_label("Prompt", exact=True).is_disabled()
    expect(page.locator("#cost")).to_have_text("Cost: 0.1475 credits (balance 100.0000)")
    tab.shot("new-video-spoken")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url(VIDEO_PAGE)
    page.wait_for_selector("body[data-ready=true]")
    [job] = jobs_of(api, account.id)
    assert page.url.endswith(f"/videos/{job['id']}")
    assert job["prompt"] == "" and job["status"] == "pending"
    assert job["audio_prompt_key"].startswith(f"uploads/{account.id}/audio-prompt-")
    assert LocalObjectStorage(root=api.home / "storage", bucket=DEFAULT_BUCKET).exists(job["audio_prompt_key"])
    meta = page.locator("#meta")
    assert meta.locator("dt").first.inner_text() == "Prompt"
    assert meta.locator("dd").first.inner_text() == "a recording, transcribed when the job runs"
    # Once the run has transcribed it (as validate_prompt records it), the page shows the transcript.
    with api.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET transcript = :t, prompt = :t WHERE id = :j"),
                     {"t": "a red fox running in snow", "j": job["id"]})
    page = tab.open(f"/videos/{job['id']}")
    rows = dict(zip(page.locator("#meta dt").all_inner_texts(), page.locator("#meta dd").all_inner_texts()))
    assert (rows["Prompt"], rows["Transcript"]) == ("a red fox running in snow", "a red fox running in snow")
    assert tab.errors == []


def test_a_silent_recording_shows_the_apis_message_and_makes_no_job(api, tab, tmp_path):
    account = make_account(api)
    silent = tmp_path / "silent.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", str(silent)],
                   check=True)
    tab.sign_in(account.email)
    page = tab.open("/videos/new")
    page.get_by_label("Or speak the prompt", exact=True).set_input_files(str(silent))
    expect(page.locator("#audio_prompt-error")).to_have_text(SILENCE)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#audio_prompt-error")).to_have_text(SILENCE)  # again after submitting: still no job
    assert page.get_by_label("Or speak the prompt", exact=True).get_attribute("aria-invalid") == "true"
    assert page.locator(".field-error:not(:empty)").count() == 1
    tab.shot("new-video-silent")
    assert jobs_of(api, account.id) == [] and page.url == api.url + "/videos/new"
    # Typing the prompt instead: the recording is dropped, the prompt field is back.
    page.get_by_role("button", name="Type the prompt instead").click()
    assert page.get_by_label("Prompt", exact=True).is_enabled()
    assert page.locator("#audio_prompt-error").inner_text() == ""
    # The upload's 422 is the browser's one console line; nothing else went wrong.
    assert tab.errors == [("console: Failed to load resource: the server responded with a status of 422 "
                           f"(Unprocessable Entity) ({api.url}/videos/new)")]


def media(tmp_path: Path) -> dict[str, Path]:
    """A real two-second MP4 and PNG thumbnails (ffmpeg), and the film's subtitles."""
    files = {"video.mp4": tmp_path / "video.mp4", "thumbnail.png": tmp_path / "thumbnail.png"}
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=8", "-t", "3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(files["video.mp4"])], check=True)
    for name, colour in (("thumbnail.png", "gray"), ("scene_01.png", "red"), ("scene_02.png", "blue")):
        files[name] = tmp_path / name
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s=64x64", "-frames:v", "1",
                        str(files[name])], check=True)
    for name, text in (("subtitles.vtt", VTT), ("subtitles.srt", SRT)):
        files[name] = tmp_path / name
        files[name].write_text(text)
    return files


@pytest.fixture
def storage(api) -> LocalObjectStorage:
    return LocalObjectStorage(root=api.home / "storage", bucket=DEFAULT_BUCKET)


def test_the_video_page_of_a_film_shows_its_scenes_thumbnails_and_subtitles(api, tab, storage, tmp_path):
    account = make_account(api)
    board = {"scenes": [{"prompt": "a fox wakes", "duration_s": 1.5, "narration": "The fox wakes.",
                         "transition": "crossfade"},
                        {"prompt": "a fox runs", "duration_s": 1.5, "narration": "It runs."}],
             "voice": "slt", "music": "generated", "subtitles": "sidecar"}
    job_id = finished_job(api, storage, tmp_path, account.id, prompt="The fox's morning", storyboard=board)
    for name, path in media(tmp_path).items():  # what upload_outputs leaves in the bucket
        storage.put_file(job_key(job_id, name), path)
    tab.sign_in(account.email)
    page = tab.open(f"/videos/{job_id}")
    assert page.locator("#status").inner_text() == "succeeded"
    scenes = page.locator("#film-scenes > li")
    assert scenes.count() == 2
    assert scenes.nth(0).locator("dd").all_inner_texts() == ["1", "a fox wakes", "1.5 s", "The fox wakes.", "crossfade"]
    assert scenes.nth(1).locator("dd").all_inner_texts() == ["2", "a fox runs", "1.5 s", "It runs.", "cut"]
    for index in range(2):
        thumbnail = page.get_by_role("img", name=f"Scene {index + 1}: {board['scenes'][index]['prompt']}")
        assert thumbnail.get_attribute("src") == f"/api/v1/jobs/{job_id}/files/scene_0{index + 1}.png"
        expect(thumbnail).to_have_js_property("naturalWidth", 64)  # loaded through the API with the session
    track = page.locator("#player track")
    assert (track.get_attribute("kind"), track.get_attribute("src"), track.get_attribute("label")) == (
        "subtitles", f"/api/v1/jobs/{job_id}/files/subtitles.vtt", "Subtitles")
    wait_until(lambda: page.evaluate("document.querySelector('#player track').readyState") == 2, 30,
               "the subtitles track to load")
    # The narration's language (voice slt: US English), from GET /api/v1/voices.
    wait_until(lambda: track.get_attribute("srclang") == "en-US", 30, "the track's srclang")
    cues = page.evaluate("[...document.querySelector('#player').textTracks[0].cues].map((c) => [c.startTime, c.text])")
    assert cues == [[0, "The fox wakes."], [2, "It runs."]]
    assert page.evaluate("document.querySelector('#player').textTracks[0].mode") == "showing"
    srt = page.get_by_role("link", name="Subtitles (SRT)")
    vtt = page.get_by_role("link", name="Subtitles (WebVTT)")
    assert srt.get_attribute("href") == f"/api/v1/jobs/{job_id}/files/subtitles.srt"
    assert page.request.get(api.url + srt.get_attribute("href")).text() == SRT  # the page's own cookies
    assert page.request.get(api.url + vtt.get_attribute("href")).text() == VTT
    tab.shot("film-succeeded")
    assert tab.errors == []

    # A clip has none of it.
    clip = finished_job(api, storage, tmp_path, account.id, prompt="a clip")
    page = tab.open(f"/videos/{clip}")
    assert page.locator("#film").is_hidden() and page.locator("#player track").count() == 0
    assert page.get_by_role("link", name="Subtitles (SRT)").count() == 0
    assert tab.errors == []
