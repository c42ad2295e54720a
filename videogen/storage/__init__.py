"""Object storage for job outputs: a local folder (default) or S3 via boto3.

Importing this package does not import boto3; the S3 backend imports it when constructed.
"""

from videogen.storage.base import (
    FileDigest,
    ObjectStorage,
    StorageRequestRejectedError,
    StoredObject,
    file_digest,
)
from videogen.storage.factory import storage_from_settings
from videogen.storage.job_outputs import (
    MANIFEST_NAME,
    job_key,
    job_prefix,
    upload_job_outputs,
)
from videogen.storage.local import LocalObjectStorage
from videogen.storage.s3 import S3ObjectStorage

__all__ = [
    "FileDigest",
    "LocalObjectStorage",
    "MANIFEST_NAME",
    "ObjectStorage",
    "S3ObjectStorage",
    "StorageRequestRejectedError",
    "StoredObject",
    "file_digest",
    "job_key",
    "job_prefix",
    "storage_from_settings",
    "upload_job_outputs",
]
