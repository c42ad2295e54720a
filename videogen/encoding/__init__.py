"""Encoding: frames -> MP4 through an ffmpeg pipe, thumbnails, ffprobe facts, metadata.json.

Needs the ``ffmpeg`` and ``ffprobe`` programs (Debian's ``ffmpeg`` package, or any build with
libx264 and libx265). Importing this package starts no process.
"""

from videogen.encoding.encoder import (
    EncodedVideo,
    EncodingError,
    build_ffmpeg_args,
    check_frames,
    encode_video,
    ffmpeg_version,
)
from videogen.encoding.metadata import (
    METADATA_FILE_NAME,
    build_metadata,
    current_code_version,
    metadata_json_bytes,
    output_digests,
    write_metadata,
)
from videogen.encoding.presets import (
    CODECS,
    QUALITY_PRESETS,
    EncoderSettings,
    QualityPreset,
    encoder_settings,
)
from videogen.encoding.probe import ProbeError, VideoFacts, probe_video
from videogen.encoding.thumbnails import Thumbnails, encode_png, thumbnail_indices, write_thumbnails

__all__ = [
    "CODECS",
    "EncodedVideo",
    "EncoderSettings",
    "EncodingError",
    "METADATA_FILE_NAME",
    "ProbeError",
    "QUALITY_PRESETS",
    "QualityPreset",
    "Thumbnails",
    "VideoFacts",
    "build_ffmpeg_args",
    "build_metadata",
    "check_frames",
    "current_code_version",
    "encode_png",
    "encode_video",
    "encoder_settings",
    "ffmpeg_version",
    "metadata_json_bytes",
    "output_digests",
    "probe_video",
    "thumbnail_indices",
    "write_metadata",
    "write_thumbnails",
]
