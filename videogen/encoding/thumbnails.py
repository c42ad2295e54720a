"""Thumbnails: the first, middle and last frame of a video, as PNG files.

Written straight from the frames in memory with a minimal PNG encoder (zlib + struct): lossless, so
a thumbnail is exactly the frame, no image library needed, and no extra ffmpeg process per picture.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videogen.encoding.encoder import check_frames

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THUMBNAIL_ROLES = ("first", "middle", "last")


@dataclass(frozen=True)
class Thumbnails:
    first: Path
    middle: Path
    last: Path
    frame_indices: tuple[int, int, int]

    def files(self) -> dict[str, Path]:
        """File name -> path, in first/middle/last order (what upload_job_outputs takes)."""
        return {path.name: path for path in (self.first, self.middle, self.last)}


def thumbnail_indices(num_frames: int) -> tuple[int, int, int]:
    """First, middle (rounded down for an even count) and last frame index."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame to have thumbnails")
    return 0, (num_frames - 1) // 2, num_frames - 1


def encode_png(rgb: np.ndarray, *, compression_level: int = 6) -> bytes:
    """PNG bytes (8-bit RGB, no interlace) for one uint8 frame of shape (height, width, 3)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"a PNG frame must be uint8 of shape (height, width, 3), got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    rows = rgb.reshape(height, width * 3)
    # Filter type 1 ("Sub"): each byte minus the same channel of the pixel to its left (mod 256).
    # Smooth pictures become runs of small numbers that deflate far better than raw pixels.
    filtered = np.empty((height, 1 + width * 3), dtype=np.uint8)
    filtered[:, 0] = 1
    filtered[:, 1:4] = rows[:, :3]
    filtered[:, 4:] = rows[:, 3:] - rows[:, :-3]  # uint8 arithmetic wraps, as PNG specifies
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour RGB
    return b"".join(
        (
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), compression_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_thumbnails(
    frames: np.ndarray, output_dir: str | os.PathLike[str], *, prefix: str = "thumb"
) -> Thumbnails:
    """Write ``<prefix>_first.png``, ``<prefix>_middle.png`` and ``<prefix>_last.png`` in ``output_dir``."""
    num_frames, _, _ = check_frames(frames)
    output_dir = Path(output_dir)
    indices = thumbnail_indices(num_frames)
    paths = []
    for role, index in zip(THUMBNAIL_ROLES, indices):
        path = output_dir / f"{prefix}_{role}.png"
        _write_atomically(path, encode_png(frames[index]))
        paths.append(path)
    return Thumbnails(first=paths[0], middle=paths[1], last=paths[2], frame_indices=indices)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
