"""Request validation: raw ``jobs`` values in, a typed request out, or a ValidationError a person can act on.

The same function runs in ``videogen submit`` (immediate feedback) and in the ``validate_prompt``
op (for rows that anything else inserted straight into the table). Raw values may be of any type:
request parameters are stored as text (see videogen.db.schema) and the CLI passes strings.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Mapping

from videogen.credits import credits_for
from videogen.errors import ValidationError
from videogen.generation.registry import DEFAULT_MODEL, ModelRegistry, ModelSpec

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1
QUALITY_PRESETS = ("STANDARD", "HD", "ULTRA")
# Whole numbers longer than this are refused before conversion: no field allows more than 19 digits,
# and "1e999999999" would otherwise take minutes (and gigabytes) to turn into an int.
MAX_INT_DIGITS = 4000
# Line breaks and tabs are ordinary in long prompts; every other control character is not text.
ALLOWED_CONTROL_CHARS = {"\n", "\t", "\r"}


@dataclass(frozen=True)
class ValidatedRequest:
    prompt: str
    negative_prompt: str
    model: str
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float
    seed: int
    quality_preset: str
    credits: Decimal

    def parameters(self) -> dict[str, Any]:
        """The generation parameters, JSON-serializable (for metadata.json and run tags)."""
        values = asdict(self)
        values["credits"] = str(self.credits)
        return values


def _check_text(field: str, value: Any, *, required: bool) -> str:
    if value is None:
        value = ""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{field} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at offset {exc.start}); "
                "send text encoded as UTF-8",
                code="invalid_encoding",
                field=field,
            ) from None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, got {type(value).__name__}", code=f"invalid_{field}", field=field)
    for index, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise ValidationError(
                f"{field} is not valid UTF-8 (undecodable byte at character {index}); send text encoded as UTF-8",
                code="invalid_encoding",
                field=field,
            )
        if char == "\x00":
            raise ValidationError(
                f"{field} contains a NUL byte at character {index}; remove it and resubmit",
                code="control_characters",
                field=field,
            )
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROL_CHARS:
            raise ValidationError(
                f"{field} contains control character U+{ord(char):04X} at character {index}; "
                "only line breaks and tabs are allowed",
                code="control_characters",
                field=field,
            )
    if required and not value.strip():
        raise ValidationError(f"{field} is empty; describe the video you want", code=f"empty_{field}", field=field)
    if len(value) > MAX_PROMPT_CHARS:
        raise ValidationError(
            f"{field} is {len(value)} characters; the maximum is {MAX_PROMPT_CHARS}",
            code=f"{field}_too_long",
            field=field,
        )
    return value


def _shown(raw: Any) -> Any:
    """``raw`` for a message (shown with !r): itself, or its first 40 characters."""
    try:
        text = str(raw)
    except ValueError:  # an int beyond Python's str() digit limit
        return f"<a number of more than {MAX_INT_DIGITS} digits>"
    return raw if len(text) <= 40 else text[:40] + "…"


def _parse_int(field: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValidationError(f"{field} must be a whole number, got {raw!r}", code=f"invalid_{field}", field=field)
    if isinstance(raw, int) and raw.bit_length() <= MAX_INT_DIGITS * 3:  # ~3.3 bits per digit
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, int):
        raise ValidationError(f"{field} is far out of range: it has more than {MAX_INT_DIGITS} digits",
                              code=f"invalid_{field}", field=field)
    shown = _shown(raw)
    if isinstance(raw, (str, Decimal)):
        text = str(raw).strip()
        try:
            as_decimal = Decimal(text)
        except Exception:
            as_decimal = None
        if as_decimal is not None and as_decimal.is_finite():
            if as_decimal.adjusted() >= MAX_INT_DIGITS:  # checked before any conversion to int
                raise ValidationError(
                    f"{field} {shown!r} is far out of range: it has more than {MAX_INT_DIGITS} digits",
                    code=f"invalid_{field}",
                    field=field,
                )
            if as_decimal == as_decimal.to_integral_value():
                return int(as_decimal)
    raise ValidationError(f"{field} must be a whole number, got {shown!r}", code=f"invalid_{field}", field=field)


def show_number(value: float) -> str:
    """A number as a person should read it in a message: whole numbers in full (never ``9.22337e+18``),
    other floats in their shortest exact form, so two different values never print the same."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    if isinstance(value, int):
        text = str(value)  # at most MAX_INT_DIGITS digits: _parse_int refuses longer ones
        return text if len(text) <= 40 else f"{text[:20]}…{text[-4:]} ({len(text.lstrip('-'))} digits)"
    return repr(value)


def _parse_float(field: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValidationError(f"{field} must be a number, got {raw!r}", code=f"invalid_{field}", field=field)
    shown = _shown(raw)
    try:
        value = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        raise ValidationError(f"{field} must be a number, got {shown!r}", code=f"invalid_{field}", field=field) from None
    if not math.isfinite(value):
        raise ValidationError(f"{field} must be a finite number, got {shown!r}", code=f"invalid_{field}", field=field)
    return value


def _in_range(field: str, value: float, low: float, high: float, hint: str = "") -> None:
    if not low <= value <= high:
        raise ValidationError(
            f"{field} {show_number(value)} is out of range: allowed {show_number(low)} to {show_number(high)}{hint}",
            code=f"invalid_{field}",
            field=field,
        )


def _check_size(field: str, value: int, low: int, high: int, multiple: int) -> None:
    if not low <= value <= high or value % multiple:
        raise ValidationError(
            f"{field} {show_number(value)} is not allowed: use a multiple of {multiple} from {low} to {high}",
            code=f"invalid_{field}",
            field=field,
        )


def _model_spec(raw_model: Any, registry: ModelRegistry) -> ModelSpec:
    name = DEFAULT_MODEL if raw_model is None or raw_model == "" else raw_model
    spec = registry.get(name) if isinstance(name, str) else None
    if spec is None:
        shown = str(name) if len(str(name)) <= 60 else str(name)[:60] + "…"
        raise ValidationError(
            f"model {shown!r} is not registered; available: {', '.join(registry.names())}",
            code="unknown_model",
            field="model",
        )
    return spec


def given(raw: Mapping[str, Any], field: str) -> bool:
    """Whether the request sets ``field`` (an empty or blank value takes the default)."""
    value = raw.get(field)
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def validate_request(raw: Mapping[str, Any], registry: ModelRegistry, *, seed_if_missing: int) -> ValidatedRequest:
    """Validate one request. ``raw`` holds the jobs columns (any missing parameter takes the model default).

    ``seed_if_missing`` is used when no seed was requested, so the chosen seed is recorded and the
    video can be reproduced.
    """
    prompt = _check_text("prompt", raw.get("prompt"), required=True)
    negative_prompt = _check_text("negative_prompt", raw.get("negative_prompt"), required=False)
    spec = _model_spec(raw.get("model"), registry)
    limits, defaults = spec.limits, spec.defaults

    def int_param(field: str, default: int) -> int:
        return _parse_int(field, raw[field]) if given(raw, field) else default

    width = int_param("width", defaults.width)
    height = int_param("height", defaults.height)
    _check_size("width", width, limits.min_width, limits.max_width, limits.size_multiple)
    _check_size("height", height, limits.min_height, limits.max_height, limits.size_multiple)

    num_frames = int_param("num_frames", defaults.num_frames)
    if not limits.min_frames <= num_frames <= limits.max_frames or (num_frames - 1) % limits.frame_multiple:
        examples = ", ".join(str(limits.frame_multiple * k + 1) for k in (1, 2, 3))
        raise ValidationError(
            f"num_frames {show_number(num_frames)} is not allowed for model {spec.name!r}: use {limits.frame_multiple}k+1 "
            f"frames (e.g. {examples}) from {limits.min_frames} to {limits.max_frames}",
            code="invalid_num_frames",
            field="num_frames",
        )
    fps = int_param("fps", defaults.fps)
    _in_range("fps", fps, limits.min_fps, limits.max_fps)
    steps = int_param("steps", defaults.steps)
    _in_range("steps", steps, limits.min_steps, limits.max_steps)
    guidance_scale = (
        _parse_float("guidance_scale", raw["guidance_scale"]) if given(raw, "guidance_scale") else defaults.guidance_scale
    )
    _in_range("guidance_scale", guidance_scale, limits.min_guidance_scale, limits.max_guidance_scale)
    seed = int_param("seed", seed_if_missing)
    _in_range("seed", seed, 0, MAX_SEED)

    preset_raw = raw.get("quality_preset")
    preset = "STANDARD" if preset_raw is None or preset_raw == "" else preset_raw
    if not isinstance(preset, str) or preset.upper() not in QUALITY_PRESETS:
        raise ValidationError(
            f"quality_preset {preset!r} is not one of {', '.join(QUALITY_PRESETS)}", code="invalid_quality_preset",
            field="quality_preset",
        )
    return ValidatedRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=spec.name,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=fps,
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        quality_preset=preset.upper(),
        credits=credits_for(num_frames=num_frames, width=width, height=height, steps=steps),
    )
