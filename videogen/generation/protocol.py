"""The wire format between a generation client (the Dagster op) and the Serve app.

Request: ``POST /generate`` with the JSON of :func:`request_body`; the model travels in the
``serve_multiplexed_model_id`` header too, so Serve routes it to a replica that has it loaded.

Response: a stream of JSON lines, each an event::

    {"event": "started", "replica": "<host>:<pid>", "model_loads": 1}
    {"event": "progress", "step": 1, "total": 4}            (one per denoising step, in order)
    {"event": "frames", "shape": [9, 64, 64, 3], "dtype": "uint8", "nbytes": 110592, "seconds": 0.09}
    <nbytes raw bytes: the frames, C order>

or, instead of the frames, ``{"event": "error", "code": "...", "message": "...", "transient": true}``.
Frames travel raw after their header: base64 in JSON would add a third to a payload that is
hundreds of megabytes for a real model's clip.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from videogen.generation.generate import GenerationParams

MODEL_HEADER = "serve_multiplexed_model_id"
REQUEST_ID_HEADER = "x-videogen-request-id"


def request_body(model: str, params: GenerationParams, request_id: str = "") -> dict[str, Any]:
    """The JSON body of ``POST /generate``: the model, the request id and the generation parameters."""
    return {"model": model, "request_id": request_id, **asdict(params)}


def event_line(event: str, **fields: Any) -> bytes:
    return json.dumps({"event": event, **fields}, separators=(",", ":")).encode() + b"\n"


def parse_event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the generation service sent an unreadable event ({exc}): {line[:120]!r}") from None
    if not isinstance(event, dict) or "event" not in event:
        raise ValueError(f"the generation service sent an event without a type: {line[:120]!r}")
    return event
