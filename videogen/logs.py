"""Logs as one JSON object per line, carrying ``job_id`` and ``run_id`` where they are known, so one
job's story can be followed across the API, the Dagster run and its ops (``grep '"job_id": 42'``).

- :class:`JsonFormatter` is the one formatter: the API (uvicorn's loggers and ours), the Dagster run
  workers (the ``generate_video`` job's console logger) and the sensors (:func:`json_logger`).
- :func:`log_context` sets ``job_id`` / ``run_id`` for the code that runs inside it (a contextvar:
  threads and asyncio tasks each see their own); a record may also carry them as ``extra``.
- :func:`redact` runs over every message and traceback: API keys, bearer and JWT tokens, presigned
  URL signatures and credentials in URLs never reach a log, whatever code wrote the line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("videogen_log_context", default={})

# (pattern, replacement): each keeps enough to tell what was there, never the secret itself.
REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # API keys: vg_<prefix>_<secret> (the prefix is shown in the UI anyway).
    (re.compile(r"\b(vg_[0-9a-f]{6,})_[A-Za-z0-9_\-]{8,}"), r"\1_[redacted]"),
    # JWTs (access tokens), wherever they appear.
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-~+/]{8,}=*"), r"\1 [redacted]"),
    # Presigned URLs (SigV4 and SigV2) and session tokens in query strings.
    (re.compile(r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=[^&\s\"']+"),
     r"\1=[redacted]"),
    # user:password@host in URLs (database URLs in a connection error, say).
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s\"']+):[^@/\s\"']+@"), r"\1:[redacted]@"),
    # password=…, secret=…, token=… in key-value text and query strings.
    (re.compile(r"(?i)\b(password|passwd|secret|token|refresh_token|api_key)=([^&\s\"',;]+)"), r"\1=[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """``job_id=…, run_id=…`` on every record logged inside (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


@contextlib.contextmanager
def no_context() -> Iterator[None]:
    """Inside, no job or run is bound (outside, whatever was stays): for code that serves many jobs
    in one thread after one was bound, a test say."""
    token = _context.set({})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Like :func:`log_context` for the rest of the current thread or task (a run's ops, one job)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
CONTEXT_FIELDS = ("job_id", "run_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message, service, job_id,
    run_id (when known), the ``extra`` fields, and the exception (type, redacted traceback)."""

    def __init__(self, service: str | None = None, **kwargs: Any) -> None:
        super().__init__(**{k: v for k, v in kwargs.items() if k in ("fmt", "datefmt", "style", "validate")})
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self.service:
            entry["service"] = self.service
        entry.update(_context.get())
        meta = getattr(record, "dagster_meta", None)
        if isinstance(meta, dict):  # a record of Dagster's log manager: the run and the step
            entry.setdefault("run_id", meta.get("run_id"))
            for key in ("job_name", "step_key"):
                if meta.get(key):
                    entry[key] = meta[key]
            if meta.get("orig_message") is not None:
                entry["message"] = redact(str(meta["orig_message"]))
            event = meta.get("dagster_event")
            if event is not None and getattr(event, "event_type_value", None):
                entry["dagster_event"] = event.event_type_value
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "dagster_meta" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=_plain, ensure_ascii=False)


def _plain(value: Any) -> Any:
    return redact(str(value))


def handler(service: str | None = None, stream=None) -> logging.Handler:
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter(service))
    return out


def json_logger(name: str, service: str, *, level: int = logging.INFO) -> logging.Logger:
    """A logger that writes JSON lines itself (not through the root logger), for code that runs in a
    process whose logging is another program's (Dagster's code server runs the sensors)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        logger.addHandler(handler(service))
    logger.setLevel(level)
    logger.propagate = False
    return logger


def uvicorn_log_config(service: str, *, level: str = "info") -> dict[str, Any]:
    """uvicorn's ``log_config``: its server and access loggers and the root logger, all JSON lines."""
    formatter = {"()": f"{__name__}.JsonFormatter", "service": service}
    stream = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"json": stream},
        "loggers": {
            "uvicorn": {"handlers": ["json"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["json"], "level": level.upper(), "propagate": False},
        },
        "root": {"handlers": ["json"], "level": level.upper()},
    }
