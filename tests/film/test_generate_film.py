"""The generate_film job in process: real PostgreSQL, the real tiny model, flite, ffmpeg, the local bucket."""

import json
import subprocess

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines.generate_film import generate_film
from resources.generation import GenerationResource
from resources.storage import StorageResource
from tests.in_process import run_job_in_process
from tests.trail import assert_trail_in_lifecycle_order
from videogen import stages
from videogen.film import stages as film_stages
from videogen.film.subtitles import parse_srt
from videogen.lifecycle import JobRequest, JobStore
from videogen.storage.job_outputs import job_key

NARRATIONS = ["At dawn, the red fox wakes in its den.", "It runs across the fresh snow.",
              "By night, it sleeps again."]


def storyboard(**changes) -> dict:
    board = {
        "scenes": [
            {"prompt": "a red fox wakes in its den", "duration_s": 2, "narration": NARRATIONS[0],
             "transition": "crossfade"},
            {"prompt": "a red fox running in snow", "duration_s": 2, "narration": NARRATIONS[1]},
            {"prompt": "a red fox asleep under the moon", "duration_s": 1.5, "narration": NARRATIONS[2]},
        ],
        "voice": "slt", "music": "generated", "subtitles": "burned",
    }
    board.update(changes)
    return board


@pytest.fixture
def store(database_url) -> JobStore:
    return JobStore(sa.create_engine(database_url))


@pytest.fixture
def storage(tmp_path) -> StorageResource:
    return StorageResource(root=str(tmp_path / "storage"))


@pytest.fixture
def run_film(database_url, tmp_path, storage):
    def run(job_id: int) -> dg.ExecuteInProcessResult:
        return run_job_in_process(generate_film, job_id, database_url=database_url, tmp_path=tmp_path,
                                  storage=storage)
    return run


def submit(store: JobStore, board: dict, **params) -> int:
    return store.submissions.submit(JobRequest(user_id="ana", prompt="the fox's day", storyboard=board,
                                               seed=params.pop("seed", 7), **params)).job_id


def probe(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_chapters", "-show_format", "-of", "json",
                          str(path)], capture_output=True, check=True).stdout
    return json.loads(out)


def loudness(path) -> float:
    log = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a", "-af", "ebur128",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    summary = log[log.rindex("Summary:"):]
    return float(summary.split("I:")[1].split("LUFS")[0])


def generated_scenes(store: JobStore, job_id: int) -> list[str]:
    return [e["message"] for e in store.reads.events(job_id) if "ready, generated" in (e["message"] or "")]


def test_a_three_scene_film_with_narration_music_and_burned_subtitles(store, run_film, storage, tmp_path):
    job_id = submit(store, storyboard())
    result = run_film(job_id)
    assert result.success
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded", row["error_message"]
    assert_trail_in_lifecycle_order(store.reads.events(job_id), row)
    client = storage.client()
    video = tmp_path / "film.mp4"
    video.write_bytes(client.read_bytes(job_key(job_id, stages.VIDEO_NAME)))
    facts = probe(video)
    # One video and one audio stream (MP4 keeps the chapter titles in a text track of its own).
    media = sorted((s["codec_type"], s["codec_name"]) for s in facts["streams"] if s["codec_type"] != "data")
    assert media == [("audio", "aac"), ("video", "h264")]
    assert [c["tags"]["title"] for c in facts["chapters"]] == [
        "Scene 1: a red fox wakes in its den", "Scene 2: a red fox running in snow",
        "Scene 3: a red fox asleep under the moon"]
    metadata = json.loads(client.read_bytes(job_key(job_id, stages.METADATA_NAME)))
    scenes = metadata["film"]["scenes"]
    frames = sum(scene["frames"] for scene in scenes)
    # Each scene lasts its duration, or its narration plus half a second when that is longer.
    for scene, asked in zip(scenes, (2, 2, 1.5)):
        assert scene["frames"] == max(round(asked * 8), round((scene["narration_s"] + 0.5) * 8))
    video_stream = next(s for s in facts["streams"] if s["codec_type"] == "video")
    assert int(video_stream["nb_frames"]) == frames
    assert abs(float(facts["format"]["duration"]) - frames / 8) <= 1 / 8 + 0.05  # AAC priming may add ~20 ms
    assert abs(loudness(video) - (-16)) <= 2
    assert metadata["quality"]["passed"] and {g["gate"] for g in metadata["quality"]["gates"]} >= {
        "audio_present", "loudness", "no_clipping", "subtitles"}
    # Subtitles: the narration's words in their order, inside each scene.
    cues = parse_srt(client.read_bytes(job_key(job_id, film_stages.SRT_NAME)).decode())
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == " ".join(NARRATIONS).split()
    assert all(a.end_s <= b.start_s for a, b in zip(cues, cues[1:])) and cues[-1].end_s <= frames / 8
    assert client.read_bytes(job_key(job_id, film_stages.VTT_NAME)).startswith(b"WEBVTT\n")
    assert {f"scene_0{i}.png" for i in (1, 2, 3)} <= {key.rsplit("/", 1)[1] for key in client.list_prefix(f"videos/{job_id}/")}
    assert len(generated_scenes(store, job_id)) == 3 and row["progress"] == 1.0
    assert metadata["film"]["storyboard"]["subtitles"] == "burned"


def test_editing_one_scene_regenerates_only_that_scene(store, run_film):
    first = submit(store, storyboard(music="none", subtitles="sidecar"))
    assert run_film(first).success and len(generated_scenes(store, first)) == 3
    edited = storyboard(music="none", subtitles="sidecar")
    edited["scenes"][1]["prompt"] = "a red fox running in deep snow at noon"
    second = submit(store, edited)
    assert run_film(second).success and store.reads.get(second)["status"] == "succeeded"
    assert generated_scenes(store, second) == ["scene 2 of 3 ready, " + generated_scenes(store, second)[0].split(", ", 1)[1]]
    cached = [e["message"] for e in store.reads.events(second) if "from the scene cache" in (e["message"] or "")]
    assert cached == ["scene 1 of 3 ready, from the scene cache", "scene 3 of 3 ready, from the scene cache"]


def test_a_missing_music_file_rejects_the_film(store, run_film):
    job_id = submit(store, storyboard(music={"key": "uploads/ana/theme.mp3"}))
    assert run_film(job_id).success  # the run did its job: it rejected the request
    row = store.reads.get(job_id)
    assert row["status"] == "rejected" and row["error_code"] == "music_not_found"
    assert row["error_message"] == ("storyboard.music.key: no object 'uploads/ana/theme.mp3' in the bucket; upload "
                                    "the music file first or choose \"generated\"")


def test_music_from_another_users_files_or_a_jobs_outputs_is_refused(store, run_film, storage, tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF")
    for key in ("uploads/bob/theme.mp3", "videos/1/video.mp4"):
        storage.client().put_file(key, tmp_path / "x.wav")
        job_id = submit(store, storyboard(music={"key": key}))
        assert run_film(job_id).success
        row = store.reads.get(job_id)
        assert (row["status"], row["error_code"]) == ("rejected", "music_not_found")
        assert row["error_message"] == (f"storyboard.music.key: {key!r} is not one of your uploads; upload the file "
                                        "under uploads/ana/")


def test_a_users_music_file_is_looped_under_the_voice(store, run_film, storage, tmp_path):
    tone = tmp_path / "theme.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=1", "-c:a", "libvorbis",
                    str(tone)], check=True)
    storage.client().put_file("uploads/ana/theme.ogg", tone)
    job_id = submit(store, storyboard(music={"key": "uploads/ana/theme.ogg"}, subtitles="none"))
    assert run_film(job_id).success
    assert store.reads.get(job_id)["status"] == "succeeded"


def test_a_voice_that_fails_fails_the_film_with_its_cause(store, database_url, tmp_path, storage):
    voices = tmp_path / "voices.json"
    voices.write_text(json.dumps([{"name": "broken", "engine": "command", "command": ["no-such-tts", "{output}"]}]))
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="t", storyboard={
        "scenes": [{"prompt": "a fox", "duration_s": 1, "narration": "Hello."}], "voice": "broken"})).job_id
    result = run_job_in_process(generate_film, job_id, database_url=database_url, tmp_path=tmp_path, storage=storage,
                                generation=GenerationResource(model_cache=str(tmp_path / "models"),
                                                              voice_registry_path=str(voices)))
    assert not result.success
    row = store.reads.get(job_id)
    assert (row["status"], row["error_code"]) == ("failed", "tts_failed")
    assert row["error_message"] == ("the text-to-speech program 'no-such-tts' of voice 'broken' was not found; "
                                    "install it (Debian: apt-get install flite espeak-ng)")
