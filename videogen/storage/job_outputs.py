"""Where a job's outputs live in the bucket, and how they are uploaded all-or-nothing.

A job's objects are ``videos/<job id>/<file>``. ``metadata.json`` (the manifest) lists the sha256 and
size of every other output, so its presence says "this job's outputs are complete": it is uploaded
last, only after every other object verified. Uploading a job's outputs again (a retry) first
removes the manifest and then everything else under the job's prefix, so a manifest never vouches
for objects being replaced and two attempts' files never mix.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
from collections.abc import Mapping
from pathlib import Path

from videogen.errors import VideogenError
from videogen.storage.base import ObjectStorage, StoredObject

logger = logging.getLogger(__name__)

JOB_KEY_ROOT = "videos"
MANIFEST_NAME = "metadata.json"
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
}
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


def job_prefix(job_id: int | str) -> str:
    """``videos/<job id>/``, with the trailing slash that keeps job 1 apart from job 12."""
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)) or not _JOB_ID.match(str(job_id)):
        raise ValueError(f"invalid job id {job_id!r}: use letters, digits, '_' or '-'")
    return f"{JOB_KEY_ROOT}/{job_id}/"


def job_key(job_id: int | str, name: str) -> str:
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise ValueError(f"invalid output file name {name!r}: a plain file name such as 'video.mp4'")
    return job_prefix(job_id) + name


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def upload_job_outputs(
    storage: ObjectStorage,
    job_id: int | str,
    files: Mapping[str, str | os.PathLike[str]],
    *,
    manifest_name: str = MANIFEST_NAME,
) -> dict[str, StoredObject]:
    """Upload ``files`` (object file name -> local path) under ``videos/<job id>/``, manifest last.

    Whatever the job's prefix held before is removed first (manifest first). Returns name ->
    verified :class:`StoredObject`, in the order of ``files``. On any failure the objects this call
    uploaded are removed (best effort) and the error is raised; the manifest is never left behind,
    so a job is complete exactly when ``exists(job_key(job_id, manifest_name))``.
    If the manifest lists ``outputs`` (as :func:`videogen.encoding.metadata.build_metadata` writes),
    they must match what was stored, or the manifest is not uploaded.
    """
    if manifest_name not in files:
        raise ValueError(f"the outputs of job {job_id} must include {manifest_name!r}, which is uploaded last")
    keys = {name: job_key(job_id, name) for name in files}
    paths = {name: Path(path) for name, path in files.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:  # before touching the store: nothing to clean up
        raise FileNotFoundError(f"cannot upload the outputs of job {job_id}, missing: {', '.join(missing)}")

    # Clean slate, manifest first: what an earlier attempt left must neither be vouched for by its
    # manifest nor mix with this attempt's files.
    storage.delete(keys[manifest_name])
    storage.delete_prefix(job_prefix(job_id))
    ordered = [name for name in files if name != manifest_name] + [manifest_name]
    stored: dict[str, StoredObject] = {}
    try:
        for name in ordered:
            if name == manifest_name:
                _check_manifest_matches(paths[name], stored)
            stored[name] = storage.put_file(keys[name], paths[name], content_type_for(name))
    except BaseException:
        _remove_quietly(storage, [obj.key for obj in stored.values()])
        raise
    return {name: stored[name] for name in files}


def _check_manifest_matches(manifest_path: Path, stored: Mapping[str, StoredObject]) -> None:
    try:
        outputs = json.loads(manifest_path.read_text(encoding="utf-8")).get("outputs")
    except (ValueError, AttributeError):
        return  # not our metadata format: nothing to cross-check
    if not isinstance(outputs, dict):
        return
    if set(outputs) != set(stored):
        raise ValueError(
            f"{manifest_path.name} lists the outputs {sorted(outputs)}, but the uploaded outputs are "
            f"{sorted(stored)}"
        )
    for name, listed in outputs.items():
        actual = stored[name]
        if not isinstance(listed, dict) or listed.get("sha256") != actual.sha256 or listed.get("size") != actual.size:
            raise ValueError(
                f"{manifest_path.name} lists {name!r} as {listed.get('size')} bytes sha256 "
                f"{listed.get('sha256')}, but the uploaded file is {actual.size} bytes sha256 {actual.sha256}"
            )


def _remove_quietly(storage: ObjectStorage, keys: list[str]) -> None:
    for key in keys:
        try:
            storage.delete(key)
        except VideogenError as exc:  # the store is likely down; the original error matters more
            logger.warning("could not remove %s after a failed upload: %s", storage.uri_for(key), exc)
