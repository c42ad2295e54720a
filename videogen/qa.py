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

One decode per file, in this process: PyAV (libav's own demuxers, decoders and filters) reads the
stream headers, decodes every frame through ffmpeg's ``blackdetect`` and ``freezedetect`` filters (and the
audio through ``ebur128`` when audio is expected) and counts the frames. No ffmpeg or ffprobe process is
started: two process starts were most of the gates' cost on a short clip. A failed gate raises
:class:`QualityGateError` whose ``code`` names the gate (``qa_*``): a
permanent failure, the file is not what was asked for and retrying the same work gives the same file.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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


def check_output(source: str | Path | bytes, expected: Expectations) -> QaReport:
    """Run every gate on ``source`` (a file's path, or its bytes); raises QualityGateError (code of the
    first failed gate) if any fails."""
    started = time.perf_counter()
    report = QaReport()
    scan = _scan(source, expected)
    if scan.video is None:
        report.gates.append(GateResult("decodes", False, f"the file cannot be read as a video ({scan.error})"))
        return _finish(report, started)
    report.gates.append(GateResult("decodes", scan.error is None,
                                   "decodes end to end" if scan.error is None else f"decoding failed: {scan.error}"))
    report.gates.append(_format_gate(scan.video, scan.frames, expected, report.measured))
    report.gates.extend(_run_gates(scan, expected, report.measured))
    if expected.audio_lufs is not None:
        report.gates.extend(_audio_gates(scan, expected, report.measured))
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


@dataclass
class _Scan:
    """What one decode of the file found. ``video``: the first video stream's codec, size and frame
    rate (None when the file has none or cannot be opened); ``error``: the first demuxing or decoding
    error. Runs are (start, end) in seconds; end None: the run lasts to the end of the stream."""

    video: dict[str, Any] | None = None
    audio_codec: str | None = None
    frames: int = 0
    error: str | None = None
    black: list[tuple[float, float | None]] = field(default_factory=list)
    freezes: list[tuple[float, float | None]] = field(default_factory=list)
    integrated_lufs: float | None = None
    peak_dbfs: float | None = None


def _scan(source: str | Path | bytes, expected: Expectations) -> _Scan:
    """One decode of the whole file through the detectors, frame by frame."""
    import av  # here, not at import: the code location, the API and every run worker import this module

    scan = _Scan()
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (av.error.FFmpegError, OSError) as error:
        scan.error = _reason(error)
        return scan
    with container:
        if not container.streams.video:
            scan.error = "no video stream"
            return scan
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            detectors, meter = _open_detectors(scan, video, audio, expected)
        except (av.error.FFmpegError, ValueError, AttributeError) as error:
            # No decoder for the stream, or no picture format or size to build the filters with (a
            # file cut right after its header, a track without samples).
            scan.video = None
            scan.error = f"no decodable picture: {_reason(error)}"
            return scan
        streams = [video] + ([audio] if meter is not None else [])
        try:
            for packet in container.demux(*streams):
                for decoded in packet.decode():
                    if packet.stream is video:
                        scan.frames += 1
                        if decoded.is_corrupt and scan.error is None:
                            # The decoder concealed damage (missing references, broken slices).
                            scan.error = f"frame {scan.frames} is damaged"
                        detectors.push(decoded)
                    else:
                        meter.push(decoded)
        except av.error.FFmpegError as error:
            scan.error = f"{_reason(error)} after {scan.frames} frames"
        try:  # close the runs still open, also after an error (else they would look endless)
            detectors.push(None)
            if meter is not None:
                meter.push(None)
        except av.error.FFmpegError:
            pass
    # Tag times are the stream's; the ffmpeg program counted from the first frame, and so do the gates.
    origin = detectors.first_time or 0.0
    scan.black = _runs(detectors.tags, "lavfi.black_start", "lavfi.black_end", origin)
    scan.freezes = _runs(detectors.tags, "lavfi.freezedetect.freeze_start", "lavfi.freezedetect.freeze_end", origin)
    if meter is not None and meter.tags:
        last = meter.tags[-1]  # ebur128 tags every frame with the loudness measured up to it
        if "lavfi.r128.I" in last:
            scan.integrated_lufs = round(float(last["lavfi.r128.I"]), 1)
        if "lavfi.r128.sample_peak" in last:
            peak = float(last["lavfi.r128.sample_peak"])  # linear, 1.0 is full scale
            scan.peak_dbfs = round(20 * math.log10(peak), 2) if peak > 0 else -math.inf
    return scan


def _open_detectors(scan: _Scan, video: Any, audio: Any, expected: Expectations) -> tuple["_Detectors", "_Detectors | None"]:
    """Read the streams' facts into ``scan`` and build the filter graphs; raises when the video stream
    has no decoder or no picture format."""
    scan.video = {"codec": video.codec_context.codec.canonical_name, "width": video.codec_context.width,
                  "height": video.codec_context.height, "fps": float(video.base_rate or 0)}
    scan.audio_codec = audio.codec_context.codec.canonical_name if audio is not None else None
    frame = 1 / expected.fps
    # blackdetect and freezedetect tag the frame where a run starts and the frame where it ends.
    detectors = _Detectors(video, [("blackdetect", f"d={frame:.6f}:pix_th={BLACK_PIXEL_THRESHOLD}"),
                                   ("freezedetect", f"n={FREEZE_NOISE_DB}dB:d={frame:.6f}")])
    meter = (_Detectors(audio, [("ebur128", "peak=sample:metadata=1")])
             if audio is not None and expected.audio_lufs is not None else None)
    return detectors, meter


class _Detectors:
    """A libavfilter graph (buffer source → filters → sink) fed with one stream's decoded frames;
    ``tags`` collects the metadata the filters attach to the frames that come out, in order."""

    def __init__(self, stream: Any, filters: list[tuple[str, str]]) -> None:
        import av

        self._drained = (av.error.BlockingIOError, av.error.EOFError)  # the graph has nothing more for now
        self.graph = av.filter.Graph()
        audio = stream.type == "audio"
        nodes = [self.graph.add_abuffer(template=stream) if audio else self.graph.add_buffer(template=stream)]
        nodes += [self.graph.add(name, arguments) for name, arguments in filters]
        nodes.append(self.graph.add("abuffersink" if audio else "buffersink"))
        for upstream, downstream in zip(nodes, nodes[1:]):
            upstream.link_to(downstream)
        self.graph.configure()
        self.tags: list[dict[str, str]] = []
        self.first_time: float | None = None  # the first frame's time in the stream, seconds

    def push(self, frame: Any) -> None:
        """Feed a frame (None: the end of the stream) and collect what comes out."""
        if frame is not None and self.first_time is None and frame.time is not None:
            self.first_time = float(frame.time)
        self.graph.push(frame)
        while True:
            try:
                out = self.graph.pull()
            except self._drained:
                return
            if out.metadata:
                self.tags.append(dict(out.metadata))


def _runs(tags: list[dict[str, str]], start_key: str, end_key: str,
          origin: float = 0.0) -> list[tuple[float, float | None]]:
    """(start, end) runs from the start and end tags, read in the order the filter set them, in
    seconds from ``origin`` (the first frame's time)."""
    runs: list[tuple[float, float | None]] = []
    start = None
    for metadata in tags:
        for key, value in metadata.items():
            if key == start_key:
                start = float(value) - origin
            elif key == end_key and start is not None:
                runs.append((start, float(value) - origin))
                start = None
    if start is not None:  # the run reaches the end of the stream: no frame after it carries an end
        runs.append((start, None))
    return runs


def _reason(error: Exception) -> str:
    """An FFmpeg error without its errno prefix: "Invalid data found when processing input"."""
    return getattr(error, "strerror", None) or str(error)


def _format_gate(video: dict[str, Any], frames: int, expected: Expectations, measured: dict[str, Any]) -> GateResult:
    fps = video["fps"]
    duration = frames / fps if fps else 0.0
    measured.update(codec=video["codec"], width=video["width"], height=video["height"],
                    frames=frames, fps=round(fps, 3), duration_s=round(duration, 3))
    wrong = []
    if video["codec"] != expected.codec:
        wrong.append(f"codec {video['codec']} instead of {expected.codec}")
    if (video["width"], video["height"]) != (expected.width, expected.height):
        wrong.append(f"size {video['width']}x{video['height']} instead of {expected.width}x{expected.height}")
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


def _run_gates(scan: _Scan, expected: Expectations, measured: dict[str, Any]) -> list[GateResult]:
    duration = measured.get("duration_s") or expected.duration_s
    frame = 1 / expected.fps
    # A run covering the whole clip always fails, however short the clip.
    black_limit = min(expected.black_max_s, duration)
    frozen_limit = min(expected.frozen_max_s, duration)
    black = _longest(scan.black, duration, frame)
    frozen = _longest(scan.freezes, duration, frame)
    measured.update(longest_black_s=round(black, 3), longest_frozen_s=round(frozen, 3))
    results = [GateResult("no_black_run", black < black_limit - 1e-6,
                          f"longest black run {black:.2f} s (limit {black_limit:.2f} s)")]
    if expected.frames >= 3:  # two frames cannot show a frozen *run*
        results.append(GateResult("no_frozen_run", frozen < frozen_limit - 1e-6,
                                  f"longest frozen run {frozen:.2f} s (limit {frozen_limit:.2f} s)"))
    return results


def _audio_gates(scan: _Scan, expected: Expectations, measured: dict[str, Any]) -> list[GateResult]:
    if scan.audio_codec is None:
        return [GateResult("audio_present", False, "no audio stream")]
    loudness, peak = scan.integrated_lufs, scan.peak_dbfs
    measured.update(audio_codec=scan.audio_codec, integrated_lufs=loudness, sample_peak_dbfs=peak)
    target, tolerance = expected.audio_lufs, expected.loudness_tolerance_lu
    loud_ok = loudness is not None and abs(loudness - target) <= tolerance
    return [
        GateResult("audio_present", True, f"{scan.audio_codec} audio"),
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
