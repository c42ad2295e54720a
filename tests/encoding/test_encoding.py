"""Encoding against the real ffmpeg/ffprobe: what lands in the file, checked by reading it back."""

from __future__ import annotations

import json
import struct
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from videogen.encoding import (
    EncodingError,
    build_ffmpeg_args,
    build_metadata,
    current_code_version,
    encode_video,
    encoder_settings,
    metadata_json_bytes,
    output_digests,
    probe_video,
    thumbnail_indices,
    write_metadata,
    write_thumbnails,
)
from videogen.storage import file_digest


def noise(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order (ISO/IEC 14496-12 box headers)."""
    boxes = []
    with open(path, "rb") as mp4:
        end = path.stat().st_size
        offset = 0
        while offset < end:
            mp4.seek(offset)
            size, kind = struct.unpack(">I4s", mp4.read(8))
            if size == 1:  # 64-bit "largesize" follows the type
                (size,) = struct.unpack(">Q", mp4.read(8))
            elif size == 0:  # box runs to the end of the file
                size = end - offset
            assert size >= 8, f"corrupt box header at {offset}"
            boxes.append(kind.decode("latin-1"))
            offset += size
    return boxes


def decode_rgb(path: Path, width: int, height: int) -> np.ndarray:
    """Decode an image or video file back to rgb24 frames with ffmpeg."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize(
    ("num_frames", "height", "width", "fps", "codec", "expected_codec", "expected_tag"),
    [
        (9, 64, 64, 8, "h264", "h264", "avc1"),
        (25, 128, 128, 24, "h264", "h264", "avc1"),
        (17, 96, 160, 12.5, "h264", "h264", "avc1"),
        (1, 32, 32, 1, "h264", "h264", "avc1"),
        (9, 64, 96, 8, "h265", "hevc", "hvc1"),
    ],
)
def test_encoded_file_has_the_requested_shape(
    tmp_path, num_frames, height, width, fps, codec, expected_codec, expected_tag
):
    encoded = encode_video(noise(num_frames, height, width), fps=fps, output_path=tmp_path / "video.mp4", codec=codec)
    facts = probe_video(encoded.path)

    assert facts.codec == expected_codec
    assert facts.codec_tag == expected_tag
    assert facts.pix_fmt == "yuv420p"
    assert (facts.width, facts.height) == (width, height)
    assert facts.frame_count == num_frames
    assert facts.fps == pytest.approx(fps)
    assert facts.duration_s == pytest.approx(num_frames / fps, abs=1e-3)
    assert facts.size_bytes == encoded.size_bytes == encoded.path.stat().st_size
    assert encoded.num_frames == num_frames and encoded.duration_s == pytest.approx(num_frames / fps)
    boxes = top_level_boxes(encoded.path)
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"
    assert not list(tmp_path.glob(".*partial*")), "temporary output left behind"


def test_fractional_ntsc_rate_is_kept_exact(tmp_path):
    encoded = encode_video(noise(5, 32, 32), fps=30000 / 1001, output_path=tmp_path / "v.mp4")
    facts = probe_video(encoded.path)
    assert facts.fps == pytest.approx(30000 / 1001, rel=1e-9)
    assert "-framerate" in encoded.ffmpeg_args
    assert encoded.ffmpeg_args[encoded.ffmpeg_args.index("-framerate") + 1] == "30000/1001"


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_presets_reach_the_encoder_and_change_the_size(tmp_path, codec):
    frames = noise(9, 64, 64, seed=7)
    sizes = {}
    for preset in ("STANDARD", "ULTRA"):
        encoded = encode_video(frames, fps=8, output_path=tmp_path / f"{preset}.mp4", preset=preset, codec=codec)
        settings = encoder_settings(preset, codec)
        # x264 and x265 write their options into the stream (an SEI message): the CRF we asked for
        # must be the one that was used.
        assert f"crf={settings.crf:.1f}".encode() in encoded.path.read_bytes()
        sizes[preset] = encoded.size_bytes
    assert encoder_settings("ULTRA", codec).crf < encoder_settings("HD", codec).crf < encoder_settings("STANDARD", codec).crf
    assert sizes["ULTRA"] > sizes["STANDARD"], sizes


def test_same_frames_give_identical_bytes(tmp_path):
    frames = noise(9, 64, 64, seed=3)
    first = encode_video(frames, fps=8, output_path=tmp_path / "a.mp4")
    second = encode_video(frames, fps=8, output_path=tmp_path / "b.mp4")
    assert first.path.read_bytes() == second.path.read_bytes()


def test_non_contiguous_frames_encode_like_their_copy(tmp_path):
    frames = noise(9, 64, 128, seed=5)[:, :, ::2]  # a strided view: every other column
    assert not frames.flags.c_contiguous
    view = encode_video(frames, fps=8, output_path=tmp_path / "view.mp4")
    copy = encode_video(np.ascontiguousarray(frames), fps=8, output_path=tmp_path / "copy.mp4")
    assert view.path.read_bytes() == copy.path.read_bytes()


def test_ffmpeg_args_are_what_the_cli_runs(tmp_path):
    """A benchmark can pipe the same raw bytes to the ffmpeg CLI with these arguments."""
    frames = noise(9, 64, 64, seed=11)
    encoded = encode_video(frames, fps=8, output_path=tmp_path / "library.mp4")
    args = build_ffmpeg_args(width=64, height=64, fps=8, output_path=tmp_path / "cli.mp4")
    subprocess.run(args, input=frames.tobytes(), check=True, capture_output=True)
    assert (tmp_path / "cli.mp4").read_bytes() == encoded.path.read_bytes()
    assert [a for a in encoded.ffmpeg_args if not a.endswith(".partial")] == [
        a for a in args if not a.endswith("cli.mp4")
    ]


def test_the_colour_matrix_is_bt709(tmp_path):
    red = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    red[..., 0] = 255
    encoded = encode_video(red, fps=1, output_path=tmp_path / "red.mp4", preset="ULTRA")
    yuv = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(encoded.path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        capture_output=True,
        check=True,
    ).stdout
    luma = np.frombuffer(yuv[: 16 * 16], np.uint8)  # the Y plane, as stored (no conversion)
    # Y' of pure red, limited range: BT.709 gives 16 + 219 * 0.2126 = 63; BT.601 would give 82.
    assert abs(float(luma.mean()) - 63) <= 1


def test_thumbnails_are_the_exact_first_middle_and_last_frames(tmp_path):
    frames = noise(9, 64, 96, seed=2)
    thumbnails = write_thumbnails(frames, tmp_path)
    assert thumbnails.frame_indices == (0, 4, 8)
    assert list(thumbnails.files()) == ["thumb_first.png", "thumb_middle.png", "thumb_last.png"]
    for path, index in zip((thumbnails.first, thumbnails.middle, thumbnails.last), thumbnails.frame_indices):
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        decoded = decode_rgb(path, width=96, height=64)
        assert decoded.shape == (1, 64, 96, 3)
        np.testing.assert_array_equal(decoded[0], frames[index])  # PNG is lossless


def test_thumbnail_indices_for_short_videos():
    assert thumbnail_indices(1) == (0, 0, 0)
    assert thumbnail_indices(2) == (0, 0, 1)
    assert thumbnail_indices(25) == (0, 12, 24)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((9, 64, 64, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((9, 64, 64), dtype=np.uint8), r"shape \(num_frames, height, width, 3\)"),
        (np.zeros((9, 64, 64, 4), dtype=np.uint8), r"RGB channels last"),
        (np.zeros((0, 64, 64, 3), dtype=np.uint8), "at least one frame"),
        (np.zeros((9, 63, 64, 3), dtype=np.uint8), "odd dimension"),
        ([[[[0, 0, 0]]]], "numpy array"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_message(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        encode_video(frames, fps=8, output_path=tmp_path / "v.mp4")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, "fps must be greater than 0"),
        ({"fps": float("nan")}, "fps must be greater than 0"),
        ({"fps": "8"}, "fps must be a number"),
        ({"fps": 8, "preset": "4K"}, "unknown quality preset '4K'; choose one of STANDARD, HD, ULTRA"),
        ({"fps": 8, "codec": "vp9"}, "unknown codec 'vp9'"),
    ],
)
def test_bad_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        encode_video(noise(1, 32, 32), output_path=tmp_path / "v.mp4", **options)


def test_preset_and_codec_names_are_case_insensitive():
    assert encoder_settings("ultra", "HEVC") == encoder_settings("ULTRA", "h265")


def test_ffmpeg_failure_reports_its_stderr_and_leaves_no_file(tmp_path):
    # x265 refuses pictures this small, so ffmpeg exits while we are still writing (more than a
    # pipe buffer of frames): the broken pipe must turn into ffmpeg's own error message.
    with pytest.raises(EncodingError, match=r"ffmpeg exited with status \d+: .*too small"):
        encode_video(noise(2000, 8, 8), fps=8, output_path=tmp_path / "video.mp4", codec="h265")
    assert not list(tmp_path.iterdir())


def test_output_path_must_be_a_file_in_an_existing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        encode_video(noise(1, 32, 32), fps=8, output_path=tmp_path / "missing" / "v.mp4")
    (tmp_path / "video.mp4").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        encode_video(noise(1, 32, 32), fps=8, output_path=tmp_path / "video.mp4")


def test_missing_ffmpeg_is_named(tmp_path):
    with pytest.raises(EncodingError, match="was not found; install ffmpeg"):
        encode_video(noise(1, 32, 32), fps=8, output_path=tmp_path / "v.mp4", ffmpeg_binary="no-such-ffmpeg")


def test_probe_rejects_a_file_that_is_not_a_video(tmp_path):
    from videogen.encoding import ProbeError

    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video")
    with pytest.raises(ProbeError, match="ffprobe could not read"):
        probe_video(bogus)


def test_metadata_lists_everything_needed_to_reproduce_the_job(tmp_path):
    frames = noise(9, 64, 64)
    encoded = encode_video(frames, fps=8, output_path=tmp_path / "video.mp4", preset="HD")
    thumbnails = write_thumbnails(frames, tmp_path)
    files = {"video.mp4": encoded.path, **thumbnails.files()}
    created = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    arguments = dict(
        job_id=42,
        prompt="a red fox running in snow",
        negative_prompt="blurry",
        parameters={"width": 64, "height": 64, "num_frames": 9, "fps": 8, "steps": 4,
                    "guidance_scale": 3.0, "quality_preset": "HD"},
        model_name="tiny",
        model_revision="random-weights-v1",
        seed=1234,
        outputs=output_digests(files),
        code_version=current_code_version({"VIDEOGEN_GIT_SHA": "0123abc"}),
        created_at=created,
        model_source="tiny-ltx",
        pipeline_class="LTXPipeline",
        encoding=encoded.settings.to_dict(),
    )  # fmt: skip
    metadata = build_metadata(**arguments)

    assert metadata == build_metadata(**arguments), "not a pure function of its inputs"
    assert metadata["created_at"] == "2025-03-01T10:30:00Z"
    assert metadata["job_id"] == "42" and metadata["seed"] == 1234
    assert metadata["model"]["name"] == "tiny" and metadata["model"]["revision"] == "random-weights-v1"
    assert metadata["code_version"]["git_sha"] == "0123abc" and metadata["code_version"]["videogen"]
    assert metadata["encoding"]["crf"] == encoder_settings("HD").crf
    assert set(metadata["outputs"]) == set(files)
    for name, path in files.items():
        digest = file_digest(path)
        assert metadata["outputs"][name] == {"size": digest.size, "sha256": digest.sha256}
    written = write_metadata(tmp_path / "metadata.json", metadata)
    assert json.loads(written.read_text()) == metadata
    assert written.read_bytes() == metadata_json_bytes(metadata)


def test_metadata_refuses_ambiguous_inputs():
    base = dict(
        job_id=1, prompt="p", negative_prompt="", parameters={}, model_name="tiny", model_revision="r",
        seed=1, outputs={}, code_version={"videogen": "0", "git_sha": None},
        created_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
    )  # fmt: skip
    with pytest.raises(ValueError, match="timezone-aware"):
        build_metadata(**{**base, "created_at": datetime(2025, 1, 1)})
    with pytest.raises(ValueError, match="JSON-serializable"):
        build_metadata(**{**base, "parameters": {"width": object()}})
    with pytest.raises(ValueError, match="seed must be"):
        build_metadata(**{**base, "seed": "7"})
    assert current_code_version({})["git_sha"] is None
