"""Files users upload for their jobs (audio prompts, music), under ``uploads/<user>/`` in the bucket.

A job may only name an object under its own user's prefix: a storyboard's music or an audio prompt
pointing at another user's upload, or at another job's outputs, would copy that file into this
user's video.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from videogen.errors import ValidationError

UPLOADS_PREFIX = "uploads/"


def user_prefix(user_id: str) -> str:
    """``uploads/<user id>/``; an id that is not a plain name (characters outside letters, digits and
    ``-_.``, or over 64 characters) becomes a readable part plus a hash of the id, so that two ids never
    share a prefix."""
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in user_id)
    if safe == user_id and 0 < len(safe) <= 64 and safe.strip(".") == safe:
        return f"{UPLOADS_PREFIX}{safe}/"
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{UPLOADS_PREFIX}{safe.strip('.')[:40]}-{digest}/"


def upload_key(user_id: str, source: Path, *, kind: str) -> str:
    """Where ``source`` goes: ``uploads/<user>/<kind>-<sha256>.<ext>`` (same content, same key)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:32]
    suffix = "".join(ch for ch in source.suffix.lower() if ch.isalnum() or ch == ".")[:8]
    return f"{user_prefix(user_id)}{kind}-{digest}{suffix}"


def check_owned(key: str, user_id: str, *, field: str, code: str) -> None:
    prefix = user_prefix(user_id)
    if not key.startswith(prefix):
        raise ValidationError(f"{field}: {key[:80]!r} is not one of your uploads; upload the file under {prefix}",
                              code=code, field=field)
