"""Object storage for job outputs: a local folder (default) or S3 through boto3."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
from pydantic import Field

from videogen.config import Settings, StorageBackend, load_settings, setting_default


class StorageResource(dg.ConfigurableResource):
    """The defaults are :class:`videogen.config.Settings`'; :func:`storage_from_env` passes the loaded values."""

    backend: StorageBackend = Field(default=setting_default("storage_backend"),
                                    description="'local' (a folder) or 's3' (any S3 API: AWS, MinIO, Ceph).")
    root: str = Field(default="", description="Local backend: the folder that holds the bucket "
                      "(empty: VIDEOGEN_STORAGE_ROOT, by default under VIDEOGEN_HOME).")
    bucket: str = Field(default=setting_default("bucket"), description="Bucket for job outputs; keys are videos/<job id>/….")
    endpoint_url: str | None = Field(default=setting_default("s3_endpoint_url"),
                                     description="S3 endpoint URL (MinIO/Ceph); empty for AWS.")
    region: str = Field(default=setting_default("s3_region"), description="S3 region.")
    create_bucket: bool = Field(default=setting_default("create_bucket"),
                                description="Create the bucket if missing (a dev MinIO).")
    presign_expiry_s: int = Field(default=setting_default("presign_expiry_s"),
                                  description="Lifetime of download links, in seconds.")
    codec: str = Field(default=setting_default("codec"), description="Video codec: h264 or h265.")

    @cached_property
    def _client(self):
        from videogen.storage.factory import storage_from_settings

        # Validated as the environment's values are; fields left out (root) take Settings' defaults.
        given = {"storage_root": self.root} if self.root else {}
        settings = Settings(
            storage_backend=self.backend,
            bucket=self.bucket,
            s3_endpoint_url=self.endpoint_url or None,
            s3_region=self.region,
            presign_expiry_s=self.presign_expiry_s,
            **given,
        )
        # Credentials are read by boto3 from the standard AWS_* environment variables, never from here.
        return storage_from_settings(settings, create_bucket=self.create_bucket)

    def client(self):
        return self._client


def storage_from_env() -> StorageResource:
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
