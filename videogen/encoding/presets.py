"""Quality presets: what ``STANDARD``, ``HD`` and ``ULTRA`` mean to the encoder.

A preset is a constant-quality target (CRF) plus an encoder speed preset. CRF, not a bitrate, because
the same preset must suit a 64x64 noise clip and a 1280x720 film: the encoder spends bits where the
picture needs them. x265's CRF scale is offset from x264's (x265 CRF 28 looks roughly like x264 CRF
23), so each preset names one CRF per codec instead of sharing a number.

Every output is MP4 with ``yuv420p`` pixels (the only chroma format every browser and phone decodes)
and ``+faststart`` (the index at the front, so playback starts before the download ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from videogen.config import DEFAULT_CODEC  # VIDEOGEN_CODEC's default, also the encoder's

PIX_FMT = "yuv420p"
CONTAINER_FORMAT = "mp4"
DEFAULT_PRESET = "STANDARD"


@dataclass(frozen=True)
class QualityPreset:
    name: str
    h264_crf: int
    h265_crf: int
    # x264/x265 speed preset: slower finds a smaller file at the same quality, at a CPU cost.
    speed_preset: str


QUALITY_PRESETS: dict[str, QualityPreset] = {
    preset.name: preset
    for preset in (
        QualityPreset(name="STANDARD", h264_crf=23, h265_crf=28, speed_preset="fast"),
        QualityPreset(name="HD", h264_crf=20, h265_crf=25, speed_preset="medium"),
        QualityPreset(name="ULTRA", h264_crf=17, h265_crf=22, speed_preset="slow"),
    )
}


@dataclass(frozen=True)
class CodecSpec:
    name: str  # what we call it: "h264" or "h265"
    encoder: str  # the ffmpeg encoder
    probe_name: str  # what ffprobe reports as codec_name
    # MP4 sample-entry tag. H.265 needs "hvc1" (parameter sets in the sample entry) for Apple
    # players; ffmpeg's default "hev1" plays elsewhere but not in Safari/QuickTime.
    tag: str | None
    # Options that silence the encoder's own stderr chatter (x265 logs to stderr regardless of
    # ffmpeg's -loglevel), so the captured stderr holds errors only.
    quiet_options: tuple[tuple[str, str], ...] = ()


CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec(name="h264", encoder="libx264", probe_name="h264", tag=None),
    "h265": CodecSpec(
        name="h265",
        encoder="libx265",
        probe_name="hevc",
        tag="hvc1",
        quiet_options=(("x265-params", "log-level=error"),),
    ),
}
_CODEC_ALIASES = {"hevc": "h265", "avc": "h264", "x264": "h264", "x265": "h265"}


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that decides the encoded bits (besides the frames and the fps)."""

    preset: str
    codec: str
    encoder: str
    crf: int
    speed_preset: str
    tag: str | None
    pix_fmt: str = PIX_FMT
    container: str = CONTAINER_FORMAT
    # Logging options for the encoder; they change no output bit, so to_dict leaves them out.
    quiet_options: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "preset": self.preset,
            "codec": self.codec,
            "encoder": self.encoder,
            "crf": self.crf,
            "speed_preset": self.speed_preset,
            "tag": self.tag,
            "pix_fmt": self.pix_fmt,
            "container": self.container,
        }


def normalize_codec(codec: str) -> CodecSpec:
    key = codec.strip().lower() if isinstance(codec, str) else codec
    key = _CODEC_ALIASES.get(key, key)
    if key not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(sorted(CODECS))}")
    return CODECS[key]


def normalize_preset(preset: str) -> QualityPreset:
    key = preset.strip().upper() if isinstance(preset, str) else preset
    if key not in QUALITY_PRESETS:
        raise ValueError(
            f"unknown quality preset {preset!r}; choose one of {', '.join(QUALITY_PRESETS)}"
        )
    return QUALITY_PRESETS[key]


def encoder_settings(preset: str = DEFAULT_PRESET, codec: str = DEFAULT_CODEC) -> EncoderSettings:
    """Resolve a preset name and a codec name (case-insensitive) to concrete encoder settings."""
    quality = normalize_preset(preset)
    spec = normalize_codec(codec)
    return EncoderSettings(
        preset=quality.name,
        codec=spec.name,
        encoder=spec.encoder,
        crf=quality.h264_crf if spec.name == "h264" else quality.h265_crf,
        speed_preset=quality.speed_preset,
        tag=spec.tag,
        quiet_options=spec.quiet_options,
    )
