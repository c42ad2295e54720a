"""GET /api/v1/jobs/{id}/files/{name}: a film's subtitles and scene thumbnails over real HTTP, with the
visibility rules of /video (another user's job is 404, support reads) and nothing else of the job's
folder (metadata.json, the video under another name, paths) reachable through it."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import another_api, make_account
from tests.api.test_auth import error_of
from tests.api.test_privacy import finished_job
from tests.storage.conftest import aws_test_environment, make_s3_storage, moto_endpoint  # noqa: F401 - fixtures
from videogen.config import DEFAULT_BUCKET
from videogen.storage.job_outputs import job_key
from videogen.storage.local import LocalObjectStorage

VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nThe fox wakes.\n"
SRT = "1\n00:00:00,000 --> 00:00:01,500\nThe fox wakes.\n"
PNG = b"\x89PNG\r\n\x1a\n scene one"


@pytest.fixture(scope="module")
def storage(api) -> LocalObjectStorage:
    return LocalObjectStorage(root=api.home / "storage", bucket=DEFAULT_BUCKET)


def film_outputs(storage, tmp_path, job_id: int) -> None:
    for name, content in (("subtitles.vtt", VTT.encode()), ("subtitles.srt", SRT.encode()), ("scene_01.png", PNG)):
        source = tmp_path / f"{job_id}-{name}"
        source.write_bytes(content)
        storage.put_file(job_key(job_id, name), source)


def test_a_films_subtitles_and_scene_thumbnails_are_served_to_whoever_sees_the_job(api, storage, user, tmp_path):
    job_id = finished_job(api, storage, tmp_path, user.id)
    film_outputs(storage, tmp_path, job_id)
    with api.client(**user.headers) as http:
        vtt = http.get(f"/api/v1/jobs/{job_id}/files/subtitles.vtt")
        assert vtt.status_code == 200 and vtt.text == VTT
        assert vtt.headers["content-type"].startswith("text/vtt")  # what a <track> expects
        assert vtt.headers["content-disposition"] == f'attachment; filename="job-{job_id}-subtitles.vtt"'
        srt = http.get(f"/api/v1/jobs/{job_id}/files/subtitles.srt")
        assert srt.status_code == 200 and srt.text == SRT
        assert srt.headers["content-type"].startswith("application/x-subrip")
        png = http.get(f"/api/v1/jobs/{job_id}/files/scene_01.png")
        assert png.status_code == 200 and png.content == PNG and png.headers["content-type"] == "image/png"
        # A scene the film does not have.
        assert error_of(http.get(f"/api/v1/jobs/{job_id}/files/scene_02.png")) == (
            404, "no_output", f"job {job_id} has no scene_02.png")
    support = make_account(api, "support", None)
    with api.client(**support.headers) as http:
        assert http.get(f"/api/v1/jobs/{job_id}/files/subtitles.vtt").text == VTT
    with api.client() as http:
        assert http.get(f"/api/v1/jobs/{job_id}/files/subtitles.vtt").status_code == 401


def test_only_subtitles_and_scene_thumbnails_and_only_of_my_finished_jobs(api, storage, user, tmp_path):
    job_id = finished_job(api, storage, tmp_path, user.id)
    film_outputs(storage, tmp_path, job_id)
    with api.client(**user.headers) as http:
        for name in ("metadata.json", "video.mp4", "thumbnail.png", "scene_1.png", "scene_001.png", "subtitles.txt",
                     "subtitles.vtt.bak", "..%2Fmetadata.json", "%2E%2E", "scene_01.png%0A"):
            response = http.get(f"/api/v1/jobs/{job_id}/files/{name}")
            assert response.status_code == 404, name
            assert response.json()["error"]["code"] in ("no_output", "not_found"), name
        shown = http.get(f"/api/v1/jobs/{job_id}/files/metadata.json")
        assert error_of(shown) == (404, "no_output", ("'metadata.json' is not a file a job has: subtitles.srt, "
                                                      "subtitles.vtt or scene_NN.png"))
        pending = http.post("/api/v1/jobs", json={"prompt": "a fox", "width": 64, "height": 64, "num_frames": 9,
                                                  "steps": 4}).json()["id"]
        assert error_of(http.get(f"/api/v1/jobs/{pending}/files/subtitles.vtt")) == (
            404, "no_output", f"job {pending} has no subtitles.vtt (it is pending)")
    other = make_account(api)
    with api.client(**other.headers) as http:
        assert error_of(http.get(f"/api/v1/jobs/{job_id}/files/subtitles.vtt")) == (
            404, "not_found", f"job {job_id} does not exist")
        assert http.get("/api/v1/jobs/999999/files/subtitles.vtt").status_code == 404


def test_the_quote_prices_an_uploaded_audio_prompt_without_a_typed_prompt(api, user):
    with api.client(**user.headers) as http:
        mine = f"uploads/{user.id}/audio-prompt-x.wav"
        quote = http.post("/api/v1/jobs/quote", json={"prompt": "", "audio_prompt_key": mine, "num_frames": "17"}).json()
        assert quote["valid"] and quote["credits"] == "0.2786" and quote["request"]["num_frames"] == 17
        theirs = http.post("/api/v1/jobs/quote", json={"prompt": "", "audio_prompt_key": "uploads/someone/a.wav"}).json()
        assert theirs["error"] == {"code": "audio_not_found", "field": "audio_prompt_key",
                                   "message": "audio_prompt_key: 'uploads/someone/a.wav' is not one of your uploads; "
                                              f"upload the file under uploads/{user.id}/"}
        typed = http.post("/api/v1/jobs/quote", json={"prompt": ""}).json()
        assert not typed["valid"] and typed["error"]["field"] == "prompt"


def test_with_s3_subtitles_come_through_the_api_and_thumbnails_as_links(api, user, tmp_path, moto_endpoint):  # noqa: F811
    """A <track> loads only same-origin (or CORS) files: the WebVTT is served by the API, not redirected."""
    bucket = make_s3_storage(moto_endpoint)
    job_id = finished_job(api, LocalObjectStorage(root=tmp_path / "unused", bucket=DEFAULT_BUCKET), tmp_path, user.id)
    film_outputs(bucket, tmp_path, job_id)
    s3_api = another_api(api, tmp_path / "s3-api", VIDEOGEN_STORAGE_BACKEND="s3", VIDEOGEN_S3_ENDPOINT_URL=moto_endpoint,
                         VIDEOGEN_BUCKET=bucket.bucket)
    with s3_api as url, httpx.Client(base_url=url, headers=user.headers, timeout=30) as http:
        vtt = http.get(f"/api/v1/jobs/{job_id}/files/subtitles.vtt")
        assert vtt.status_code == 200 and vtt.text == VTT and vtt.headers["content-type"].startswith("text/vtt")
        assert vtt.headers["content-disposition"] == f'attachment; filename="job-{job_id}-subtitles.vtt"'
        assert http.get(f"/api/v1/jobs/{job_id}/files/subtitles.srt").text == SRT
        png = http.get(f"/api/v1/jobs/{job_id}/files/scene_01.png")
        assert png.status_code == 307 and png.headers["location"].startswith(f"{moto_endpoint}/{bucket.bucket}/")
        assert httpx.get(png.headers["location"]).content == PNG
        assert http.get(f"/api/v1/jobs/{job_id}/files/scene_02.png").status_code == 404
