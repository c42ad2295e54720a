"""Object storage for job outputs: a local folder (default) or S3 through boto3."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import dagster as dg
from pydantic import Field

from videogen.config import DEFAULT_BUCKET, Settings


class StorageResource(dg.ConfigurableResource):
    backend: str = Field(default="local", description="'local' (a folder) or 's3' (any S3 API: AWS, MinIO, Ceph).")
    root: str = Field(default="", description="Local backend: the folder that holds the bucket.")
    bucket: str = Field(default=DEFAULT_BUCKET, description="Bucket for job outputs; keys are videos/<job id>/….")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint URL (MinIO/Ceph); empty for AWS.")
    region: str = Field(default="us-east-1", description="S3 region.")
    create_bucket: bool = Field(default=False, description="Create the bucket if missing (a dev MinIO).")
    presign_expiry_s: int = Field(default=3600, description="Lifetime of download links, in seconds.")
    codec: str = Field(default="h264", description="Video codec: h264 (default) or h265.")

    @cached_property
    def _client(self):
        from videogen.storage.factory import storage_from_settings

        settings = Settings(
            storage_backend=self.backend,
            storage_root=Path(self.root).expanduser() if self.root else Settings().storage_root,
            bucket=self.bucket,
            s3_endpoint_url=self.endpoint_url or None,
            s3_region=self.region,
            presign_expiry_s=self.presign_expiry_s,
        )
        # Credentials are read by boto3 from the standard AWS_* environment variables, never from here.
        return storage_from_settings(settings, create_bucket=self.create_bucket)

    def client(self):
        return self._client


def storage_from_env() -> StorageResource:
    from videogen.config import load_settings

    settings = load_settings()
    return StorageResource(
        backend=settings.storage_backend,
        root=str(settings.storage_root),
        bucket=settings.bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        create_bucket=settings.create_bucket,
        presign_expiry_s=settings.presign_expiry_s,
        codec=settings.codec,
    )
