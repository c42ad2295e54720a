"""Build the configured storage backend from :class:`videogen.config.Settings`."""

from __future__ import annotations

from videogen.config import Settings
from videogen.storage.base import ObjectStorage


def storage_from_settings(settings: Settings, *, create_bucket: bool = False) -> ObjectStorage:
    """``VIDEOGEN_STORAGE_BACKEND=local`` (default): ``<VIDEOGEN_STORAGE_ROOT>/<bucket>/``;
    ``s3``: boto3 against ``VIDEOGEN_S3_ENDPOINT_URL`` (AWS when unset). ``create_bucket`` makes the
    S3 backend create a missing bucket on first upload (handy with a fresh MinIO; in production the
    bucket is provisioned with its lifecycle and access policy, so leave it off).

    ``Settings`` has validated the backend's name (``local`` or ``s3``)."""
    if settings.storage_backend == "local":
        from videogen.storage.local import LocalObjectStorage

        return LocalObjectStorage(root=settings.storage_root, bucket=settings.bucket)
    from videogen.storage.s3 import S3ObjectStorage

    return S3ObjectStorage(
        bucket=settings.bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        create_bucket=create_bucket,
    )
