"""Output QA gates (videogen.qa) on real files encoded by ffmpeg, and in the generate_video job."""

import json
import re
import subprocess

import numpy as np
import pytest
import sqlalchemy as sa

from tests.in_process import run_job_in_process
from videogen import qa
from videogen.encoding.encoder import encode_video

FPS = 8


def noise(frames: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def clip(tmp_path, frames: np.ndarray, name: str = "clip.mp4"):
    return encode_video(frames, fps=FPS, output_path=tmp_path / name).path


def expect(frames: int, **extra) -> qa.Expectations:
    return qa.Expectations(width=64, height=64, frames=frames, fps=FPS, **extra)


def failure(path, expected) -> qa.QualityGateError:
    with pytest.raises(qa.QualityGateError) as raised:
        qa.check_output(path, expected)
    return raised.value


def test_a_good_clip_passes_every_gate_and_reports_what_it_measured(tmp_path):
    report = qa.check_output(clip(tmp_path, noise(17)), expect(17))
    assert [g.gate for g in report.gates] == ["decodes", "format", "no_black_run", "no_frozen_run"]
    assert report.passed and report.measured["frames"] == 17 and report.measured["duration_s"] == 2.125
    assert report.to_dict()["passed"] is True and json.dumps(report.to_dict())


def test_an_all_black_clip_fails_with_qa_black_frames(tmp_path):
    error = failure(clip(tmp_path, np.zeros((9, 64, 64, 3), np.uint8)), expect(9))
    assert error.code == "qa_black_frames"
    assert "no_black_run: longest black run 1.12 s (limit 1.00 s)" in error.message


def test_black_and_frozen_runs_fail_only_past_their_threshold(tmp_path):
    frames = noise(49)
    frames[8:24] = 0  # 16 black frames: 2 s
    assert failure(clip(tmp_path, frames), expect(49)).code == "qa_black_frames"
    frames = noise(49)
    frames[8:14] = 0  # 6 black frames: 0.75 s, under the 1 s limit
    frames[20:34] = frames[20]  # 14 identical frames: 1.75 s, under the 2 s limit
    report = qa.check_output(clip(tmp_path, frames, "ok.mp4"), expect(49))
    assert report.measured["longest_black_s"] == 0.75 and report.measured["longest_frozen_s"] == 1.75
    frames[20:40] = frames[20]  # 20 identical frames: 2.5 s
    error = failure(clip(tmp_path, frames, "frozen.mp4"), expect(49))
    assert error.code == "qa_frozen_frames" and "longest frozen run 2.50 s (limit 2.00 s)" in error.message
    # The thresholds are the configured ones.
    assert qa.check_output(tmp_path / "frozen.mp4", expect(49, frozen_max_s=3.0)).passed


def test_a_truncated_file_fails_with_qa_undecodable(tmp_path):
    data = clip(tmp_path, noise(17)).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    error = failure(tmp_path / "cut.mp4", expect(17))
    assert error.code == "qa_undecodable" and error.message.startswith("the output failed its quality gates: decodes:")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert failure(tmp_path / "empty.mp4", expect(17)).code == "qa_undecodable"


def test_corrupt_bytes_inside_the_stream_fail_with_qa_undecodable(tmp_path):
    data = bytearray(clip(tmp_path, noise(17)).read_bytes())
    start = data.find(b"mdat") + 200
    for offset in range(start, start + 1000, 7):  # damage the first frames' slices
        data[offset] ^= 0xFF
    error = failure(bytes(data), expect(17))
    assert error.code == "qa_undecodable"
    assert "decodes: decoding failed: Invalid data found when processing input after " in error.message


def test_a_file_cut_right_after_its_header_fails_with_qa_undecodable(tmp_path):
    """moov first (faststart), then nothing: the stream has no picture format to decode with."""
    fast = tmp_path / "fast.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip(tmp_path, noise(17))), "-c", "copy",
                    "-movflags", "+faststart", str(fast)], check=True)
    data = fast.read_bytes()
    error = failure(data[: data.find(b"mdat") + 4], expect(17))
    assert error.code == "qa_undecodable"
    assert "decodes: the file cannot be read as a video (no decodable picture: " in error.message


def test_the_gates_read_a_file_or_its_bytes_alike(tmp_path):
    path = clip(tmp_path, noise(17))
    from_path, from_bytes = qa.check_output(path, expect(17)), qa.check_output(path.read_bytes(), expect(17))
    assert from_path.measured == from_bytes.measured and from_path.gates == from_bytes.gates


def ffmpeg_cli_runs(path, frame: float, duration: float) -> tuple[float, float, str]:
    """The ffmpeg program's own report for the same detectors and meter: the longest black and frozen
    runs (to the end of the stream when no end is logged) and its stderr."""
    log = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vf",
                          f"blackdetect=d={frame}:pix_th=0.10,freezedetect=n=-60dB:d={frame}",
                          "-af", "ebur128=peak=sample", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    black = [float(d) for d in re.findall(r"black_duration:\s*([\d.]+)", log)]
    starts = [float(v) for v in re.findall(r"freeze_start: ([\d.]+)", log)]
    durations = [float(v) for v in re.findall(r"freeze_duration: ([\d.]+)", log)]
    frozen = durations + ([duration - starts[-1]] if len(starts) > len(durations) else [])
    return max(black, default=0.0), max(frozen, default=0.0), log


def test_the_in_process_detectors_measure_what_the_ffmpeg_program_measures(tmp_path):
    frames = noise(49)
    frames[8:14] = 0
    frames[20:34] = frames[20]
    video = with_tone(tmp_path, clip(tmp_path, frames), 0, "tone.mp4")
    report = qa.check_output(video, expect(49, audio_lufs=-21.0))
    black, frozen, log = ffmpeg_cli_runs(video, 1 / FPS, 49 / FPS)
    assert (report.measured["longest_black_s"], report.measured["longest_frozen_s"]) == (black, frozen) == (0.75, 1.75)
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", log[log.rfind("Summary:"):]).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", log[log.rfind("Summary:"):]).group(1))
    assert abs(report.measured["integrated_lufs"] - integrated) <= 0.1
    assert abs(report.measured["sample_peak_dbfs"] - peak) <= 0.1


def test_a_file_that_is_not_what_was_asked_fails_with_qa_format(tmp_path):
    path = clip(tmp_path, noise(9))
    error = failure(path, expect(17))
    assert error.code == "qa_format" and "format: 9 frames instead of 17" in error.message
    error = failure(path, qa.Expectations(width=96, height=64, frames=9, fps=24, codec="hevc"))
    assert "codec h264 instead of hevc, size 64x64 instead of 96x64" in error.message and "8 fps instead of 24" in error.message


def with_tone(tmp_path, video, volume_db: float, name: str):
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-af", f"volume={volume_db}dB", "-shortest",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(out)], check=True)
    return out


def test_audio_gates_measure_loudness_and_clipping(tmp_path):
    video = clip(tmp_path, noise(17))
    # ffmpeg's sine is -18 dBFS peak (amplitude 1/8): about -21 LUFS.
    assert failure(video, expect(17, audio_lufs=-16.0)).code == "qa_audio_missing"
    quiet = with_tone(tmp_path, video, 0, "quiet.mp4")
    error = failure(quiet, expect(17, audio_lufs=-16.0))
    assert error.code == "qa_loudness" and "(target -16 ± 2 LU)" in error.message
    measured = error.report.measured["integrated_lufs"]
    assert qa.check_output(quiet, expect(17, audio_lufs=measured)).passed
    clipped = with_tone(tmp_path, video, 24, "clipped.mp4")
    error = failure(clipped, expect(17, audio_lufs=-16.0, loudness_tolerance_lu=30))
    assert error.code == "qa_clipping"


def test_subtitle_cues_must_be_ordered_and_inside_the_video(tmp_path):
    video = clip(tmp_path, noise(17))  # 2.125 s
    good = [qa.Cue(0.0, 1.0, "a"), qa.Cue(1.0, 2.1, "b")]
    assert qa.check_output(video, expect(17, cues=good)).passed
    late = failure(video, expect(17, cues=[qa.Cue(0.0, 1.0, "a"), qa.Cue(1.5, 3.0, "b")]))
    assert late.code == "qa_subtitles" and "cue 2 ends at 3.000 s, after the video (2.125 s)" in late.message
    overlap = failure(video, expect(17, cues=[qa.Cue(0.0, 1.0, "a"), qa.Cue(0.5, 1.5, "b")]))
    assert "cue 2 starts at 0.500 s, before cue 1 ends (1.000 s)" in overlap.message
    backwards = failure(video, expect(17, cues=[qa.Cue(1.0, 0.5, "a")]))
    assert "cue 1 runs from 1.000 s to 0.500 s" in backwards.message


def test_the_job_records_the_gates_and_an_injected_black_clip_fails_it(database_url, tmp_path, monkeypatch):
    from pipelines.generate_video import generate_video
    from resources.storage import StorageResource
    from videogen import stages
    from videogen.lifecycle import JobRequest, JobStore
    from videogen.storage.job_outputs import job_key

    store = JobStore(sa.create_engine(database_url))
    storage = StorageResource(root=str(tmp_path / "storage"))

    def run(job_id):
        return run_job_in_process(generate_video, job_id, database_url=database_url, tmp_path=tmp_path,
                                  storage=storage)

    good = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    assert run(good).success and store.reads.get(good)["status"] == "succeeded"
    qa_events = [e["message"] for e in store.reads.events(good) if e["stage"] == "qa"]
    assert qa_events[0] == "checking the output"
    assert qa_events[1].startswith("quality gates passed (decodes, format, no_black_run, no_frozen_run) in ")
    metadata = json.loads(storage.client().read_bytes(job_key(good, stages.METADATA_NAME)))
    assert metadata["quality"]["passed"] is True and metadata["quality"]["measured"]["frames"] == 9

    real_generate = stages.generate

    def black(generator, job, **kwargs):
        generated = real_generate(generator, job, **kwargs)
        return stages.GeneratedFrames(job_id=generated.job_id, frames=np.zeros_like(generated.frames),
                                      gpu_seconds=generated.gpu_seconds)

    monkeypatch.setattr(stages, "generate", black)
    bad = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    assert not run(bad).success
    row = store.reads.get(bad)
    assert row["status"] == "failed" and row["error_code"] == "qa_black_frames" and row["output_uri"] is None
    assert "no_black_run: longest black run 1.12 s (limit 1.00 s)" in row["error_message"]
    assert storage.client().list_prefix(f"videos/{bad}/") == []


def test_a_black_clip_is_generated_once_more_with_a_new_seed_when_configured(database_url, tmp_path, monkeypatch):
    from pipelines.generate_video import generate_video
    from resources.quality import QualityResource
    from tests.trail import assert_trail_in_lifecycle_order
    from videogen import stages
    from videogen.lifecycle import JobRequest, JobStore

    store = JobStore(sa.create_engine(database_url))

    def run(job_id):
        return run_job_in_process(generate_video, job_id, database_url=database_url, tmp_path=tmp_path,
                                  quality=QualityResource(regenerate=True))

    real_generate = stages.generate
    black_seeds = set()

    def black_for(seeds):
        def generate(generator, job, **kwargs):
            generated = real_generate(generator, job, **kwargs)
            if seeds == "all" or job.request.seed in seeds:
                black_seeds.add(job.request.seed)
                return stages.GeneratedFrames(job_id=generated.job_id, frames=np.zeros_like(generated.frames),
                                              gpu_seconds=generated.gpu_seconds)
            return generated
        return generate

    # The first seed gives a black clip, the new one a good clip: the job succeeds on its second run.
    monkeypatch.setattr(stages, "generate", black_for({11}))
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", seed=11)).job_id
    assert run(job_id).success
    row = store.reads.get(job_id)
    assert (row["status"], row["submission"], row["run_id"]) == ("pending", 1, None) and row["seed"] != "11"
    regenerated = [e for e in store.reads.events(job_id) if e["stage"] == "regenerate"]
    assert len(regenerated) == 1 and regenerated[0]["message"] == (
        "qa_black_frames: no_black_run: longest black run 1.12 s (limit 1.00 s); no_frozen_run: longest frozen run "
        f"1.12 s (limit 1.12 s); generating once more with a new seed ({row['seed']})")
    assert run(job_id).success
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded" and black_seeds == {11}
    assert_trail_in_lifecycle_order(store.reads.events(job_id), row)

    # Black whatever the seed: regenerated once, then failed.
    monkeypatch.setattr(stages, "generate", black_for("all"))
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox", seed=12)).job_id
    assert run(job_id).success and store.reads.get(job_id)["status"] == "pending"
    assert not run(job_id).success
    row = store.reads.get(job_id)
    assert (row["status"], row["error_code"]) == ("failed", "qa_black_frames")
    assert [e["stage"] for e in store.reads.events(job_id)].count("regenerate") == 1
