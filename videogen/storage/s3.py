"""Object storage on S3 or an S3-compatible store (MinIO, Ceph RGW), through boto3.

Uploads are a single ``PutObject`` carrying the file's SHA-256 twice: as ``ChecksumSHA256``, which
AWS and MinIO check against the body on arrival (a corrupted upload is refused with ``BadDigest``)
and keep with the object, and as user metadata ``sha256``, which every S3-compatible store keeps.
Verification then asks ``HeadObject`` for the size and the stored checksum, preferring
``ChecksumSHA256`` and falling back to the metadata on stores that keep no additional checksums.
Where a store neither checks nor computes checksums (moto, older Ceph), the read-back proves the
size and that the object is the one we wrote (not truncated, not replaced by another writer), not
that every byte survived: TCP/TLS integrity is then what guards the bytes in transit.

One PUT rather than a multipart upload because multipart objects only get a composite checksum (a
hash of part hashes), which cannot be compared with the file's SHA-256; a single PUT takes objects
up to 5 GiB.

Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, a profile, an instance or pod role); nothing here reads or prints them.
Timeouts are short and botocore retries at most once: the job's retry policy (3 attempts, with
backoff) lives upstream and should see a failure quickly.

boto3 is imported in the constructor, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from videogen.config import DEFAULT_BUCKET, setting_default
from videogen.errors import StorageUnavailableError, StorageVerificationError
from videogen.storage.base import (
    FileDigest,
    ObjectStorage,
    StorageRequestRejectedError,
    validate_bucket_name,
    validate_expiry,
    validate_key,
    validate_prefix,
)

MAX_SINGLE_PUT_BYTES = 5 * 1024**3
DELETE_BATCH = 1000  # DeleteObjects' limit
# Error codes that mean "busy or briefly broken, try later" even when the status is not 5xx.
RETRYABLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
     "ServiceUnavailable", "InternalError", "RequestLimitExceeded", "TooManyRequests"}
)  # fmt: skip
CHECKSUM_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
# A missing *object*. A missing bucket (NoSuchBucket) is not one: it is a configuration error.
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
MISSING_BUCKET_CODE = "NoSuchBucket"


def redact_url(url: str) -> str:
    """Drop any ``user:password@`` from a URL before it goes into a message."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class S3ObjectStorage(ObjectStorage):
    def __init__(
        self,
        *,
        bucket: str = DEFAULT_BUCKET,
        endpoint_url: str | None = None,
        region: str = setting_default("s3_region"),
        create_bucket: bool = False,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 2,
    ) -> None:
        """``endpoint_url`` None means AWS; set it for MinIO/Ceph (path-style addressing is then used,
        which those stores expect). ``create_bucket``: create the bucket, if missing, before the first
        request that needs it. ``max_attempts`` counts botocore's first try (2 = one quick retry of
        a blip)."""
        import boto3
        from botocore.config import Config

        self.bucket = validate_bucket_name(bucket)
        self.region = region
        self.create_bucket = create_bucket
        self._bucket_checked = False
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Send checksums only where we give them or the API requires them: botocore's default
            # (a CRC32 trailer on every upload, in aws-chunked encoding) breaks older MinIO and Ceph.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        # The endpoint actually used (for AWS, the regional one botocore resolved), for messages.
        self.endpoint_url = redact_url(self._client.meta.endpoint_url)

    def __repr__(self) -> str:
        return f"S3ObjectStorage(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    # -- error translation ------------------------------------------------------------------------

    def _translate(self, exc: Exception, action: str) -> Exception:
        from botocore import exceptions as botocore_errors

        where = f"S3 endpoint {self.endpoint_url} (bucket {self.bucket})"
        if isinstance(exc, (botocore_errors.NoCredentialsError, botocore_errors.PartialCredentialsError)):
            return StorageRequestRejectedError(
                f"no usable AWS credentials to {action} at {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or a profile or role)"
            )
        if isinstance(exc, (botocore_errors.ConnectionError, botocore_errors.HTTPClientError)):
            # Refused, DNS failure, connect/read timeout, connection reset.
            return StorageUnavailableError(f"{where} is unreachable ({action}): {type(exc).__name__}: {exc}")
        if isinstance(exc, botocore_errors.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            detail = f"{where} answered HTTP {status} {code} ({action}): {error.get('Message') or exc}"
            if status >= 500 or status == 429 or code in RETRYABLE_CODES:
                return StorageUnavailableError(detail)
            if code in CHECKSUM_CODES:
                return StorageVerificationError(detail)
            if code == MISSING_BUCKET_CODE:
                return StorageRequestRejectedError(self._missing_bucket_message(action), code="storage_bucket_missing")
            return StorageRequestRejectedError(detail)
        if isinstance(exc, botocore_errors.ParamValidationError):
            return exc  # our bug, not the store's state: surface it as is
        if isinstance(exc, botocore_errors.BotoCoreError):  # e.g. a response body cut short
            return StorageUnavailableError(f"{where} failed ({action}): {type(exc).__name__}: {exc}")
        return exc

    def _missing_bucket_message(self, action: str) -> str:
        return (
            f"bucket {self.bucket!r} does not exist at S3 endpoint {self.endpoint_url} (NoSuchBucket, while "
            f"trying to {action}): create the bucket {self.bucket!r} (with its lifecycle and access policy) or "
            "set VIDEOGEN_BUCKET to an existing one; for a development MinIO or moto, set "
            "VIDEOGEN_S3_CREATE_BUCKET=1 to have it created on first use"
        )

    def _call(self, operation: str, action: str, *, missing_ok: bool = False, **params: Any) -> Any:
        """Call a client operation on our bucket; a 404 gives None when ``missing_ok``."""
        from botocore import exceptions as botocore_errors

        if operation not in ("head_bucket", "create_bucket"):
            self._ensure_bucket_once()
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, **params)
        except botocore_errors.ClientError as exc:
            if missing_ok and _is_not_found(exc):
                return None
            raise self._translate(exc, action) from exc
        except botocore_errors.BotoCoreError as exc:
            raise self._translate(exc, action) from exc

    # -- bucket -----------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (and is ours)."""
        if self._call("head_bucket", "check the bucket", missing_ok=True) is not None:
            return
        params: dict[str, Any] = {}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._call("create_bucket", "create the bucket", **params)
        except StorageRequestRejectedError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):  # lost a creation race to ourselves: fine
                raise

    def _ensure_bucket_once(self) -> None:
        if self.create_bucket and not self._bucket_checked:
            self.ensure_bucket()
            self._bucket_checked = True

    # -- primitives -------------------------------------------------------------------------------

    def _write_object(self, key: str, path: Path, expected: FileDigest, content_type: str) -> None:
        if expected.size > MAX_SINGLE_PUT_BYTES:
            raise ValueError(f"{path} is {expected.size} bytes; a verified single upload takes at most 5 GiB")
        with open(path, "rb") as body:
            self._call(
                "put_object",
                f"upload {key}",
                Key=key,
                Body=body,
                ContentLength=expected.size,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=expected.sha256_base64,
                Metadata={"sha256": expected.sha256},
            )

    def _stored_digest(self, key: str) -> FileDigest | None:
        head = self._call(
            "head_object", f"verify {key}", missing_ok=True, Key=key, ChecksumMode="ENABLED"
        )
        if head is None:
            return None
        sha256 = _hex_from_checksum(head.get("ChecksumSHA256")) or head.get("Metadata", {}).get("sha256", "")
        return FileDigest(size=int(head["ContentLength"]), sha256=sha256.lower())

    def exists(self, key: str) -> bool:
        validate_key(key)
        return self._call("head_object", f"look up {key}", missing_ok=True, Key=key) is not None

    def read_bytes(self, key: str) -> bytes:
        from botocore import exceptions as botocore_errors

        validate_key(key)
        response = self._call("get_object", f"download {key}", missing_ok=True, Key=key)
        if response is None:
            raise FileNotFoundError(f"no object {self.uri_for(key)}")
        try:  # the body streams after the headers: a timeout can still happen here
            return response["Body"].read()
        except botocore_errors.BotoCoreError as exc:
            raise self._translate(exc, f"download {key}") from exc

    def delete(self, key: str) -> None:
        validate_key(key)
        self._call("delete_object", f"delete {key}", Key=key)

    def list_prefix(self, prefix: str) -> list[str]:
        from botocore import exceptions as botocore_errors

        validate_prefix(prefix, allow_empty=True)
        self._ensure_bucket_once()
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except (botocore_errors.ClientError, botocore_errors.BotoCoreError) as exc:
            raise self._translate(exc, f"list {prefix!r}") from exc
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix, allow_empty=False)
        keys = self.list_prefix(prefix)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = self._call(
                "delete_objects",
                f"delete {len(batch)} objects under {prefix!r}",
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            failures = response.get("Errors") or []
            if failures:
                first = failures[0]
                raise StorageUnavailableError(
                    f"S3 endpoint {self.endpoint_url} (bucket {self.bucket}) did not delete "
                    f"{len(failures)} objects under {prefix!r}, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A SigV4 GET URL (computed locally, no request). It is a bearer credential until it
        expires: hand it to the user it is for, and keep it out of logs."""
        from botocore import exceptions as botocore_errors

        validate_key(key)
        validate_expiry(expires_s)
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            )
        except botocore_errors.BotoCoreError as exc:
            raise self._translate(exc, f"presign {key}") from exc

    def uri_for(self, key: str) -> str:
        validate_key(key)
        return f"s3://{self.bucket}/{key}"


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == MISSING_BUCKET_CODE:
        return False
    return status == 404 or code in NOT_FOUND_CODES


def _hex_from_checksum(checksum: str | None) -> str:
    """``ChecksumSHA256`` (base64) as hex; "" when absent or composite (multipart: "<b64>-<parts>")."""
    if not checksum or "-" in checksum:
        return ""
    try:
        return base64.b64decode(checksum, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""

