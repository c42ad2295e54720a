"""The object-storage contract every backend meets, and the checksum type it verifies with.

Keys look like S3 keys (``videos/<job id>/video.mp4``), ``/``-separated, relative to a bucket. Every
upload is verified: after writing, the backend reads back what the store holds (size and sha256)
and compares it with the local file; on a mismatch the object is deleted and
:class:`~videogen.errors.StorageVerificationError` (transient, so retried) is raised. A caller that
got a :class:`StoredObject` back therefore knows those exact bytes are in the store.

Errors: the store being unreachable, slow or overloaded is :class:`StorageUnavailableError`
(retried); a request the store refuses for good (bad credentials, missing bucket, access denied) is
:class:`StorageRequestRejectedError` (not retried: retrying cannot fix configuration).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from videogen.errors import StorageVerificationError, VideogenError

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024
MAX_KEY_BYTES = 1024  # S3's limit
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600  # SigV4's limit
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageRequestRejectedError(VideogenError):
    """The store refused the request in a way a retry cannot fix (credentials, permissions, bucket)."""

    code = "storage_rejected"


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str  # lowercase hex

    @property
    def sha256_base64(self) -> str:
        """The form S3's ``ChecksumSHA256`` uses."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


def file_digest(path: str | os.PathLike[str]) -> FileDigest:
    """Size and sha256 of a file, read in chunks (videos can be large)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(HASH_CHUNK_BYTES), b""):
            digest.update(block)
            size += len(block)
    return FileDigest(size=size, sha256=digest.hexdigest())


@dataclass(frozen=True)
class StoredObject:
    uri: str  # "s3://bucket/key" or "file:///.../bucket/key"
    key: str
    size: int
    sha256: str


def validate_bucket_name(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


def validate_key(key: str) -> str:
    """Refuse keys that S3 would mangle or that could escape a local bucket directory."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"an object key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:80]!r}...")
    if "\\" in key or any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise ValueError(f"object key {key!r} contains a backslash or a control character")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(
            f"object key {key!r} must be '/'-separated names without empty, '.' or '..' parts "
            "(and must not start or end with '/')"
        )
    return key


def validate_prefix(prefix: str, *, allow_empty: bool) -> str:
    if not isinstance(prefix, str):
        raise ValueError(f"a key prefix must be a string, got {prefix!r}")
    if not prefix and not allow_empty:
        raise ValueError("refusing an empty prefix: it would select every object in the bucket")
    if prefix.startswith("/") or "\\" in prefix or "//" in prefix:
        raise ValueError(f"invalid key prefix {prefix!r}")
    return prefix


def validate_expiry(expires_s: int) -> int:
    if isinstance(expires_s, bool) or not isinstance(expires_s, int) or not 1 <= expires_s <= MAX_PRESIGN_EXPIRY_S:
        raise ValueError(f"expires_s must be an integer from 1 to {MAX_PRESIGN_EXPIRY_S} seconds, got {expires_s!r}")
    return expires_s


class ObjectStorage(ABC):
    """A bucket of objects. Subclasses implement the primitive operations; uploads are verified here."""

    bucket: str

    def put_file(
        self, key: str, path: str | os.PathLike[str], content_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Upload a local file under ``key`` (replacing any object there) and verify what was stored."""
        validate_key(key)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cannot upload {path}: no such file")
        expected = file_digest(path)
        self._write_object(key, path, expected, content_type)
        stored = self._stored_digest(key)
        if stored != expected:
            self._discard_unverified(key)
            found = "nothing" if stored is None else f"{stored.size} bytes, sha256 {stored.sha256}"
            raise StorageVerificationError(
                f"upload of {self.uri_for(key)} did not verify: sent {expected.size} bytes with sha256 "
                f"{expected.sha256}, the store holds {found}; the object was removed"
            )
        return StoredObject(uri=self.uri_for(key), key=key, size=expected.size, sha256=expected.sha256)

    def _discard_unverified(self, key: str) -> None:
        try:
            self.delete(key)
        except VideogenError as exc:  # report the verification failure, not the cleanup failure
            logger.warning("could not remove unverified object %s: %s", self.uri_for(key), exc)

    # -- primitives -----------------------------------------------------------------------------

    @abstractmethod
    def _write_object(self, key: str, path: Path, expected: FileDigest, content_type: str) -> None:
        """Store the file's bytes under ``key``. ``expected`` is the file's digest, for stores that
        check the body on arrival."""

    @abstractmethod
    def _stored_digest(self, key: str) -> FileDigest | None:
        """What the store holds under ``key`` (None when nothing), read back independently of the write."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object in memory (metadata.json, tests); raises FileNotFoundError when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; removing an absent object is not an error."""

    @abstractmethod
    def list_prefix(self, prefix: str) -> list[str]:
        """Sorted keys that start with ``prefix`` (plain string prefix, as in S3)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many. An empty prefix is
        refused. Pass ``videos/<job id>/`` with the trailing slash, or job 1 takes job 12 with it."""

    @abstractmethod
    def presigned_url(self, key: str, expires_s: int) -> str:
        """A URL that downloads the object without credentials until it expires."""

    @abstractmethod
    def uri_for(self, key: str) -> str:
        """The stable address of an object (what ``jobs.output_uri`` holds)."""
