"""Object storage in a local folder: ``<root>/<bucket>/<key>``, the default for one-machine setups.

Writes are atomic: the bytes go to a hidden temporary file in the destination directory, are
flushed to disk, and the file is renamed over the key. A reader sees the old object or the new one,
never a partial file, even if the process dies mid-copy. Temporary files start with
:data:`INCOMING_PREFIX`, which keys may not use, and listings skip them.

``presigned_url`` returns a ``file://`` URI: a local folder has no signatures and no expiry, and
anyone who can read the folder can read the object. Content types are not recorded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from videogen.config import DEFAULT_BUCKET
from videogen.errors import StorageUnavailableError
from videogen.storage.base import (
    HASH_CHUNK_BYTES,
    FileDigest,
    ObjectStorage,
    file_digest,
    validate_bucket_name,
    validate_expiry,
    validate_key,
    validate_prefix,
)

INCOMING_PREFIX = ".incoming-"


class LocalObjectStorage(ObjectStorage):
    def __init__(self, *, root: str | os.PathLike[str], bucket: str = DEFAULT_BUCKET) -> None:
        self.bucket = validate_bucket_name(bucket)
        # Absolute, so that uri_for gives a usable file:// URI wherever the caller runs.
        self.root = Path(root).expanduser().resolve()
        self.bucket_dir = self.root / self.bucket

    def __repr__(self) -> str:
        return f"LocalObjectStorage(bucket_dir={str(self.bucket_dir)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        if any(segment.startswith(INCOMING_PREFIX) for segment in key.split("/")):
            raise ValueError(f"object key {key!r} uses the reserved prefix {INCOMING_PREFIX!r}")
        return self.bucket_dir / key

    def _unavailable(self, action: str, exc: OSError) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"local storage at {self.bucket_dir} could not {action}: {exc.strerror or exc}"
        )

    def _write_object(self, key: str, path: Path, expected: FileDigest, content_type: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=INCOMING_PREFIX, dir=target.parent)
            try:
                with os.fdopen(handle, "wb") as sink, open(path, "rb") as source:
                    shutil.copyfileobj(source, sink, HASH_CHUNK_BYTES)
                    sink.flush()
                    os.fsync(sink.fileno())
                os.chmod(partial, 0o644)  # mkstemp creates 0600; objects are meant to be served
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
            _fsync_directory(target.parent)  # make the rename itself durable
        except OSError as exc:
            raise self._unavailable(f"store {key}", exc) from exc

    def _stored_digest(self, key: str) -> FileDigest | None:
        target = self._path(key)
        try:
            return file_digest(target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unavailable(f"read back {key}", exc) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        target = self._path(key)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no object {self.uri_for(key)}") from None
        except OSError as exc:
            raise self._unavailable(f"read {key}", exc) from exc

    def delete(self, key: str) -> None:
        target = self._path(key)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable(f"delete {key}", exc) from exc
        self._prune_empty_directories(target.parent)

    def _prune_empty_directories(self, directory: Path) -> None:
        """Remove directories left empty, up to the bucket directory, so old jobs leave no trace."""
        while directory != self.bucket_dir and self.bucket_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone, or busy): stop climbing
                return
            directory = directory.parent

    def list_prefix(self, prefix: str) -> list[str]:
        validate_prefix(prefix, allow_empty=True)
        # Walk only below the deepest directory the prefix names: listing one job must not scan all.
        directory_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.bucket_dir / directory_part if directory_part else self.bucket_dir
        if ".." in directory_part.split("/") or not start.is_dir():
            return []
        keys = []
        for current, _dirs, files in os.walk(start):
            relative = Path(current).relative_to(self.bucket_dir).as_posix()
            for name in files:
                if name.startswith(INCOMING_PREFIX):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)
        keys = self.list_prefix(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A ``file://`` URI; ``expires_s`` is checked for consistency with S3 but cannot be enforced."""
        validate_expiry(expires_s)
        return self.uri_for(key)

    def uri_for(self, key: str) -> str:
        return self._path(key).as_uri()


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
