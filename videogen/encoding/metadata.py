"""``metadata.json``: everything needed to reproduce a job and to check its outputs.

:func:`build_metadata` is a pure function of its arguments (no clock, no environment, no files), so
the same job gives the same document; the impure inputs are gathered by the caller with
:func:`current_code_version`, :func:`output_digests` and ``datetime.now(timezone.utc)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from videogen import __version__
from videogen.storage.base import FileDigest, file_digest

METADATA_SCHEMA_VERSION = 1
METADATA_FILE_NAME = "metadata.json"
GIT_SHA_ENV = "VIDEOGEN_GIT_SHA"


def current_code_version(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The package version and, when the build recorded it in ``VIDEOGEN_GIT_SHA``, the git commit."""
    env = os.environ if env is None else env
    return {"videogen": __version__, "git_sha": (env.get(GIT_SHA_ENV) or "").strip() or None}


def output_digests(files: Mapping[str, str | os.PathLike[str]]) -> dict[str, FileDigest]:
    """Output name -> size and sha256 of the local file, for :func:`build_metadata`."""
    return {name: file_digest(path) for name, path in files.items()}


def _json_copy(value: Any, what: str) -> Any:
    """A deep, JSON-only copy: the document must not alias the caller's objects or hold non-JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serializable (numbers, strings, lists, dicts): {exc}") from exc


def utc_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def build_metadata(
    *,
    job_id: int | str,
    prompt: str,
    negative_prompt: str,
    parameters: Mapping[str, Any],
    model_name: str,
    model_revision: str,
    seed: int,
    outputs: Mapping[str, FileDigest],
    code_version: Mapping[str, str | None],
    created_at: datetime,
    model_source: str | None = None,
    pipeline_class: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    model_source_location: str | None = None,
    quality: Mapping[str, Any] | None = None,
    film: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata.json document.

    ``parameters``: the normalized generation parameters (width, height, num_frames, fps, steps,
    guidance_scale, quality_preset, ...). ``outputs``: every other object of the job, by file name.
    ``encoding``: the encoder settings (``EncoderSettings.to_dict()``, plus the ffmpeg version).
    ``model_source``/``model_source_location``: what was loaded and from where, as
    ``ModelSpec.recorded_source`` gives them (``model_cache``, ``hub`` or ``local_directory``).
    ``quality``: the QA gates' report (``QaReport.to_dict()``); ``film``: a film's storyboard, scenes
    and timings; each key is left out when None.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be the integer the generator was seeded with, got {seed!r}")
    if METADATA_FILE_NAME in outputs:
        raise ValueError(f"{METADATA_FILE_NAME} cannot list its own checksum among the outputs")
    document = {
        "schema_version": METADATA_SCHEMA_VERSION,
        "job_id": str(job_id),
        "created_at": utc_timestamp(created_at),
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "model": {
            "name": model_name,
            "revision": model_revision,
            "source": model_source,
            "source_location": model_source_location,
            "pipeline_class": pipeline_class,
        },
        "parameters": _json_copy(dict(parameters), "parameters"),
        "encoding": _json_copy(dict(encoding), "encoding") if encoding is not None else None,
        "code_version": _json_copy(dict(code_version), "code_version"),
        "outputs": {
            name: {"size": digest.size, "sha256": digest.sha256} for name, digest in sorted(outputs.items())
        },
    }
    if quality is not None:
        document["quality"] = _json_copy(dict(quality), "quality")
    if film is not None:
        document["film"] = _json_copy(dict(film), "film")
    return document


def metadata_json_bytes(metadata: Mapping[str, Any]) -> bytes:
    """Canonical bytes (sorted keys, UTF-8, newline at the end): same document, same checksum."""
    text = json.dumps(metadata, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def write_metadata(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Path:
    """Write the document atomically (a reader never sees half a file)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(metadata_json_bytes(metadata))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
