"""Output QA gates: a video may succeed only once its file is shown to be what was asked for.

Run on every clip and every film before upload, on the encoded file itself (never on what we asked
ffmpeg for):

* ``decodes``: the file opens and decodes end to end without a decoder error (a truncated upload or a
  broken encode fails here);
* ``format``: codec, size, frame count, frame rate and duration are the request's;
* ``no_black_run`` / ``no_frozen_run``: no run of (almost) black or of identical frames longer than a
  threshold (ffmpeg's ``blackdetect`` and ``freezedetect``); a clip shorter than the threshold fails
  when the run covers all of it;
* ``audio_present``, ``loudness``, ``no_clipping`` (when audio is expected): an audio stream exists, its
  integrated loudness (EBU R128, ffmpeg's ``ebur128``) is within the tolerance of the target, and its
  sample peak stays below full scale;
* ``subtitles``: every cue lies inside the video, ends after it starts, and follows the previous one.

Two processes per file: ffprobe reads the stream headers, and one ``ffmpeg`` decode runs the detectors
(and the loudness meter), counts the frames (``-progress``) and tags every decoder error with its
log level. A failed gate raises :class:`QualityGateError` whose ``code`` names the gate (``qa_*``): a
permanent failure, the file is not what was asked for and retrying the same work gives the same file.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from videogen.errors import VideogenError

DEFAULT_BLACK_MAX_S = 1.0
DEFAULT_FROZEN_MAX_S = 2.0
DEFAULT_LOUDNESS_TOLERANCE_LU = 2.0
DEFAULT_LOUDNESS_LUFS = -16.0
# A sample peak at or above this is clipping (full scale is 0 dBFS; AAC's rounding may touch -0.0x).
CLIPPING_DBFS = -0.01
# blackdetect: a pixel is black below 10 % luma, a picture when 98 % of its pixels are (ffmpeg's
# defaults). freezedetect: frames differing by less than -60 dB of noise are identical.
BLACK_PIXEL_THRESHOLD = 0.10
FREEZE_NOISE_DB = -60
TIMEOUT_S = 600.0


class QualityGateError(VideogenError):
    """The output failed a QA gate; ``code`` is ``qa_<gate>`` and ``report`` holds every gate's result."""

    code = "qa_failed"

    def __init__(self, message: str, *, code: str, report: "QaReport") -> None:
        super().__init__(message, code=code)
        self.report = report


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class QaLimits:
    """The configured thresholds (VIDEOGEN_QA_*)."""

    black_max_s: float = DEFAULT_BLACK_MAX_S
    frozen_max_s: float = DEFAULT_FROZEN_MAX_S
    loudness_lufs: float = DEFAULT_LOUDNESS_LUFS
    loudness_tolerance_lu: float = DEFAULT_LOUDNESS_TOLERANCE_LU


@dataclass(frozen=True)
class Expectations:
    """What the file must be. ``audio_lufs``: the loudness target when audio is expected, else None.
    ``cues``: the subtitle cues shown with it (sidecar or burned in), else None."""

    width: int
    height: int
    frames: int
    fps: float
    codec: str = "h264"
    audio_lufs: float | None = None
    cues: Sequence[Cue] | None = None
    black_max_s: float = DEFAULT_BLACK_MAX_S
    frozen_max_s: float = DEFAULT_FROZEN_MAX_S
    loudness_tolerance_lu: float = DEFAULT_LOUDNESS_TOLERANCE_LU

    @classmethod
    def within(cls, limits: QaLimits, *, audio: bool = False, **facts: Any) -> "Expectations":
        """The expectations for ``facts`` (width, height, frames, fps, codec, cues) under ``limits``."""
        return cls(black_max_s=limits.black_max_s, frozen_max_s=limits.frozen_max_s,
                   loudness_tolerance_lu=limits.loudness_tolerance_lu,
                   audio_lufs=limits.loudness_lufs if audio else None, **facts)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str


@dataclass
class QaReport:
    gates: list[GateResult] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def failures(self) -> list[GateResult]:
        return [gate for gate in self.gates if not gate.passed]

    def summary(self) -> str:
        """One line for the audit trail."""
        if self.passed:
            return f"quality gates passed ({', '.join(g.gate for g in self.gates)}) in {self.seconds:.2f} s"
        return "; ".join(f"{g.gate}: {g.detail}" for g in self.failures())

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "seconds": round(self.seconds, 3),
                "gates": [asdict(gate) for gate in self.gates], "measured": self.measured}

    @classmethod
    def from_dict(cls, report: dict[str, Any]) -> "QaReport":
        return cls(gates=[GateResult(**gate) for gate in report["gates"]], measured=report["measured"],
                   seconds=report["seconds"])


def check_output(path: str | Path, expected: Expectations, *, ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe") -> QaReport:
    """Run every gate on ``path``; raises QualityGateError (code of the first failed gate) if any fails."""
    started = time.perf_counter()
    report = QaReport()
    path = Path(path)
    streams = _probe(path, ffprobe)
    if streams is None or not any(s.get("codec_type") == "video" for s in streams.get("streams", [])):
        report.gates.append(GateResult("decodes", False, "the file cannot be read as a video "
                                       f"({streams.get('error') if streams else 'ffprobe failed'})"))
        return _finish(report, started)
    scan = _scan(path, expected, has_audio=any(s.get("codec_type") == "audio" for s in streams["streams"]),
                 ffmpeg=ffmpeg)
    decode_errors = scan["errors"]
    report.gates.append(GateResult(
        "decodes", not decode_errors and scan["returncode"] == 0,
        "decodes end to end" if not decode_errors and scan["returncode"] == 0
        else f"decoding failed: {(decode_errors or ['ffmpeg exit status ' + str(scan['returncode'])])[0]}"))
    video = next(s for s in streams["streams"] if s.get("codec_type") == "video")
    report.gates.append(_format_gate(video, scan["frames"], expected, report.measured))
    report.gates.extend(_run_gates(scan, expected, report.measured))
    if expected.audio_lufs is not None:
        report.gates.extend(_audio_gates(streams, scan, expected, report.measured))
    if expected.cues is not None:
        report.gates.append(_subtitle_gate(expected.cues, report.measured.get("duration_s", expected.duration_s),
                                           1 / expected.fps))
    return _finish(report, started)


GATE_CODES = {
    "decodes": "qa_undecodable", "format": "qa_format", "no_black_run": "qa_black_frames",
    "no_frozen_run": "qa_frozen_frames", "audio_present": "qa_audio_missing", "loudness": "qa_loudness",
    "no_clipping": "qa_clipping", "subtitles": "qa_subtitles",
}


def _finish(report: QaReport, started: float) -> QaReport:
    report.seconds = time.perf_counter() - started
    failed = report.failures()
    if failed:
        raise QualityGateError(f"the output failed its quality gates: {report.summary()}",
                               code=GATE_CODES[failed[0].gate], report=report)
    return report


def _probe(path: Path, ffprobe: str) -> dict[str, Any] | None:
    # Headers only: the frames are counted by the detectors' decode (_scan), not by a second one here.
    args = [ffprobe, "-v", "error", "-show_entries",
            "stream=codec_type,codec_name,width,height,r_frame_rate,duration,channels"
            ":format=duration", "-of", "json", str(path)]
    try:
        completed = subprocess.run(args, capture_output=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise VideogenError(f"the ffprobe program {ffprobe!r} was not found; install ffmpeg") from None
    if completed.returncode != 0:
        return {"error": completed.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or "unknown error",
                "streams": []}
    return json.loads(completed.stdout or b"{}")


# With -loglevel level+info every line carries "[<level>]" after any "[<component> @ 0x…]" prefix.
_ERROR_LINE = re.compile(r"^(\[[^]]+\] )?\[(error|fatal|panic)\] ")
_LEVEL_TAGS = re.compile(r"^(\[[^]]+\] )*")
_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)\s+black_duration:\s*([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start:\s*([\d.]+)")
_FREEZE_END = re.compile(r"freeze_end:\s*([\d.]+)")
_INTEGRATED = re.compile(r"^\s*I:\s*(-?[\d.]+|-inf)\s*LUFS", re.M)
_PEAK = re.compile(r"^\s*Peak:\s*(-?[\d.]+|-inf)\s*dBFS", re.M)


def _scan(path: Path, expected: Expectations, *, has_audio: bool, ffmpeg: str) -> dict[str, Any]:
    """One decode of the whole file through the detectors; every log line tagged with its level."""
    frame = 1 / expected.fps
    video_filters = (f"blackdetect=d={frame:.6f}:pix_th={BLACK_PIXEL_THRESHOLD},"
                     f"freezedetect=n={FREEZE_NOISE_DB}dB:d={frame:.6f}")
    args = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "level+info", "-progress", "pipe:1", "-i", str(path),
            "-map", "0:v:0", "-vf", video_filters]
    if has_audio and expected.audio_lufs is not None:
        args += ["-map", "0:a:0", "-af", "ebur128=peak=sample"]
    args += ["-f", "null", "-"]
    completed = subprocess.run(args, capture_output=True, timeout=TIMEOUT_S, check=False)
    log = completed.stderr.decode("utf-8", "replace")
    errors = [_LEVEL_TAGS.sub("", line) for line in log.splitlines() if _ERROR_LINE.search(line)]
    freezes: list[tuple[float, float]] = []
    start = None
    for line in log.splitlines():
        if (m := _FREEZE_START.search(line)) is not None:
            start = float(m.group(1))
        elif (m := _FREEZE_END.search(line)) is not None and start is not None:
            freezes.append((start, float(m.group(1))))
            start = None
    if start is not None:  # frozen up to the end: freezedetect reports no end
        freezes.append((start, None))  # type: ignore[arg-type]
    summary = log[log.rfind("Summary:"):] if "Summary:" in log else ""
    integrated = _INTEGRATED.search(summary)
    peak = _PEAK.search(summary)
    counted = re.findall(r"^frame=(\d+)$", completed.stdout.decode("ascii", "replace"), re.M)
    return {
        "frames": int(counted[-1]) if counted else 0,
        "returncode": completed.returncode,
        "errors": errors,
        "black": [(float(a), float(b)) for a, b, _ in _BLACK.findall(log)],
        "freezes": freezes,
        "integrated_lufs": None if integrated is None else float(integrated.group(1)),
        "peak_dbfs": None if peak is None else float(peak.group(1)),
    }


def _rate(text: str) -> float:
    num, _, den = (text or "0/1").partition("/")
    return float(Fraction(int(num), int(den or 1))) if int(den or 1) else 0.0


def _format_gate(video: dict[str, Any], frames: int, expected: Expectations, measured: dict[str, Any]) -> GateResult:
    fps = _rate(video.get("r_frame_rate", "0/1"))
    duration = frames / fps if fps else 0.0
    measured.update(codec=video.get("codec_name"), width=video.get("width"), height=video.get("height"),
                    frames=frames, fps=round(fps, 3), duration_s=round(duration, 3))
    wrong = []
    if video.get("codec_name") != expected.codec:
        wrong.append(f"codec {video.get('codec_name')} instead of {expected.codec}")
    if (video.get("width"), video.get("height")) != (expected.width, expected.height):
        wrong.append(f"size {video.get('width')}x{video.get('height')} instead of {expected.width}x{expected.height}")
    if frames != expected.frames:
        wrong.append(f"{frames} frames instead of {expected.frames}")
    if abs(fps - expected.fps) > 1e-3:
        wrong.append(f"{fps:g} fps instead of {expected.fps:g}")
    if frames == expected.frames and abs(fps - expected.fps) <= 1e-3 and abs(duration - expected.duration_s) > 1 / expected.fps:
        wrong.append(f"{duration:.3f} s instead of {expected.duration_s:.3f} s")
    detail = (f"{expected.codec} {expected.width}x{expected.height}, {expected.frames} frames at {expected.fps:g} fps "
              f"({expected.duration_s:.3f} s)") if not wrong else ", ".join(wrong)
    return GateResult("format", not wrong, detail)


def _longest(runs: list[tuple[float, float | None]], duration: float, frame: float) -> float:
    """The longest run's time on screen. A run that reaches the end of the stream has no end mark
    (freezedetect) or one at the last frame's timestamp (blackdetect): it lasts to the end."""
    longest = 0.0
    for start, end in runs:
        if end is None or end >= duration - frame - 1e-6:
            end = duration
        longest = max(longest, end - start)
    return longest


def _run_gates(scan: dict[str, Any], expected: Expectations, measured: dict[str, Any]) -> list[GateResult]:
    duration = measured.get("duration_s") or expected.duration_s
    frame = 1 / expected.fps
    # A run covering the whole clip always fails, however short the clip.
    black_limit = min(expected.black_max_s, duration)
    frozen_limit = min(expected.frozen_max_s, duration)
    black = _longest(scan["black"], duration, frame)
    frozen = _longest(scan["freezes"], duration, frame)
    measured.update(longest_black_s=round(black, 3), longest_frozen_s=round(frozen, 3))
    results = [GateResult("no_black_run", black < black_limit - 1e-6,
                          f"longest black run {black:.2f} s (limit {black_limit:.2f} s)")]
    if expected.frames >= 3:  # two frames cannot show a frozen *run*
        results.append(GateResult("no_frozen_run", frozen < frozen_limit - 1e-6,
                                  f"longest frozen run {frozen:.2f} s (limit {frozen_limit:.2f} s)"))
    return results


def _audio_gates(streams: dict[str, Any], scan: dict[str, Any], expected: Expectations,
                 measured: dict[str, Any]) -> list[GateResult]:
    audio = [s for s in streams.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        return [GateResult("audio_present", False, "no audio stream")]
    loudness, peak = scan["integrated_lufs"], scan["peak_dbfs"]
    measured.update(audio_codec=audio[0].get("codec_name"), integrated_lufs=loudness, sample_peak_dbfs=peak)
    target, tolerance = expected.audio_lufs, expected.loudness_tolerance_lu
    loud_ok = loudness is not None and abs(loudness - target) <= tolerance
    return [
        GateResult("audio_present", True, f"{audio[0].get('codec_name')} audio"),
        GateResult("loudness", loud_ok, f"integrated loudness {loudness} LUFS (target {target:g} ± {tolerance:g} LU)"),
        GateResult("no_clipping", peak is not None and peak < CLIPPING_DBFS, f"sample peak {peak} dBFS"),
    ]


def _subtitle_gate(cues: Sequence[Cue], duration: float, frame: float) -> GateResult:
    previous_end = 0.0
    for number, cue in enumerate(cues, start=1):
        if cue.start_s < 0 or cue.end_s <= cue.start_s:
            return GateResult("subtitles", False, f"cue {number} runs from {cue.start_s:.3f} s to {cue.end_s:.3f} s")
        if cue.start_s < previous_end - 1e-6:
            return GateResult("subtitles", False, f"cue {number} starts at {cue.start_s:.3f} s, before cue "
                              f"{number - 1} ends ({previous_end:.3f} s)")
        if cue.end_s > duration + frame + 1e-6:
            return GateResult("subtitles", False, f"cue {number} ends at {cue.end_s:.3f} s, after the video "
                              f"({duration:.3f} s)")
        previous_end = cue.end_s
    return GateResult("subtitles", True, f"{len(cues)} cues in order inside the video")
