"""Films through the API and the CLI: a storyboard is priced as the sum of its scenes, stored on the row,
shown back; a bad storyboard is 422 with the field at fault, and costs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

from tests.api.test_auth import error_of
from tests.api.test_jobs_api import balance

BOARD = {"scenes": [{"prompt": "a fox wakes", "duration_s": 1, "narration": "The fox wakes."},
                    {"prompt": "a fox runs", "duration_s": 2}],
         "voice": "rms", "music": "generated", "subtitles": "sidecar"}
# Scene 1 is priced at its narration's estimated length (14 characters at 10 a second + 0.5 s = 1.9 s:
# 15 shown frames → 17 generated), scene 2 at 2 s (16 → 17); at 64×64 and 4 steps: 2 × 0.2786 credits.
BOARD_PRICE = Decimal("0.2786") + Decimal("0.2786")


def test_a_storyboard_submission_reserves_the_films_price(api, user):
    with api.client(**user.headers) as http:
        response = http.post("/api/v1/jobs", json={"prompt": "the fox's morning", "storyboard": BOARD})
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["storyboard"] == BOARD and job["prompt"] == "the fox's morning"
        assert balance(api, user.id) == Decimal("100") - BOARD_PRICE
        assert http.get(f"/api/v1/jobs/{job['id']}").json()["storyboard"] == BOARD


def test_a_bad_storyboard_is_422_with_its_field_and_costs_nothing(api, user):
    with api.client(**user.headers) as http:
        bad = {**BOARD, "scenes": [{**BOARD["scenes"][0], "duration_s": -1}]}
        response = http.post("/api/v1/jobs", json={"prompt": "t", "storyboard": bad})
        assert error_of(response) == (422, "invalid_scene_duration",
                                      "storyboard.scenes[0].duration_s: -1 is out of range: allowed 0.5 to 20 seconds")
        assert response.json()["error"].get("job_id") is not None  # stored as rejected, like a bad clip
        unknown = http.post("/api/v1/jobs", json={"prompt": "t", "storyboard": {**BOARD, "voice": "hal"}})
        assert error_of(unknown)[1] == "unknown_voice"
        assert balance(api, user.id) == Decimal("100")


def test_the_cli_submits_a_storyboard_file_through_the_api(api, user, tmp_path):
    board = tmp_path / "film.json"
    board.write_text(json.dumps(BOARD))
    env = {**os.environ, "VIDEOGEN_API_KEY": user.key}
    out = subprocess.run([sys.executable, "-m", "videogen.cli", "submit", "--api", api.url, "--storyboard", str(board),
                          "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["prompt"] == "a fox wakes" and job["storyboard"] == BOARD  # titled after its first scene
    board.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "videogen.cli", "submit", "--api", api.url, "--storyboard", str(board)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "storyboard" in out.stderr


def test_the_quote_prices_a_film_or_names_its_bad_field(api, user):
    with api.client(**user.headers) as http:
        quote = http.post("/api/v1/jobs/quote", json={"prompt": "t", "storyboard": BOARD}).json()
        assert quote["valid"] and quote["credits"] == str(BOARD_PRICE)
        bad = http.post("/api/v1/jobs/quote", json={"prompt": "t", "storyboard": {"scenes": []}}).json()
        assert bad["error"] == {"code": "storyboard_no_scenes", "field": "storyboard.scenes",
                                "message": "storyboard.scenes: is empty; a film needs at least one scene"}


def test_an_audio_prompt_and_music_are_uploaded_checked_and_owned(api, user, tmp_path):
    import subprocess as sp

    from videogen.film.voices import VoiceRegistry, synthesize

    speech = synthesize("a red fox running in snow", VoiceRegistry.from_file(None).get("rms"), tmp_path / "fox.wav")
    with api.client(**user.headers) as http:
        uploaded = http.post("/api/v1/uploads?kind=audio_prompt", content=speech.path.read_bytes(),
                             headers={"Content-Type": "audio/wav"})
        assert uploaded.status_code == 201, uploaded.text
        key = uploaded.json()["key"]
        assert key.startswith(f"uploads/{user.id}/audio-prompt-") and key.endswith(".wav")
        job = http.post("/api/v1/jobs", json={"prompt": "", "audio_prompt_key": key})
        assert job.status_code == 201, job.text
        assert job.json()["transcript"] is None  # transcribed by the run
        # Bad uploads: each with its status and message; nothing stored.
        silent = tmp_path / "silent.wav"
        sp.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", str(silent)],
               check=True)
        assert error_of(http.post("/api/v1/uploads?kind=audio_prompt", content=silent.read_bytes(),
                                  headers={"Content-Type": "audio/wav"})) == (
            422, "audio_silent", "the audio prompt is silent; record the prompt again, closer to the microphone")
        assert error_of(http.post("/api/v1/uploads?kind=music", content=b"not audio",
                                  headers={"Content-Type": "audio/mpeg"}))[:2] == (422, "invalid_music")
        assert error_of(http.post("/api/v1/uploads?kind=music", content=b"x", headers={"Content-Type": "text/plain"}))[:2] == (
            422, "invalid_upload")
        assert error_of(http.post("/api/v1/uploads?kind=music", content=b"x" * (10 * 1024 * 1024 + 1),
                                  headers={"Content-Type": "audio/wav"})) == (
            413, "body_too_large", "the request body is larger than 10 MiB")
        # Another user's upload cannot be named.
        other = http.post("/api/v1/jobs", json={"prompt": "", "audio_prompt_key": "uploads/someone-else/a.wav"})
        assert error_of(other) == (422, "audio_not_found", "audio_prompt_key: 'uploads/someone-else/a.wav' is not one "
                                   f"of your uploads; upload the file under uploads/{user.id}/")
        film = http.post("/api/v1/jobs", json={"prompt": "t", "storyboard": {**BOARD, "music": {"key": "videos/1/x.mp4"}}})
        assert error_of(film)[:2] == (422, "music_not_found")
        voices = http.get("/api/v1/voices").json()["voices"]
        assert {"name": "slt", "description": "US English, female (flite, CMU SLT)", "language": "en-US",
                "default": True} in voices
        assert {"name": "fr", "description": "French (espeak-ng)", "language": "fr", "default": False} in voices


def test_a_storyboard_with_nan_is_422_not_a_server_error(api, user):
    with api.client(**user.headers) as http:
        response = http.post("/api/v1/jobs", content=b'{"prompt": "t", "storyboard": {"scenes": '
                                                     b'[{"prompt": "a fox", "duration_s": NaN}]}}',
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert balance(api, user.id) == Decimal("100")
