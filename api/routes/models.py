"""The models a job may ask for, with their defaults and limits (what the web app's form shows)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Caller, Context
from api.schemas import ModelOut, ModelsOut
from videogen.generation.registry import DEFAULT_MODEL
from videogen.validation import QUALITY_PRESETS

router = APIRouter(prefix="/api/v1/models", tags=["models"])


@router.get("", response_model=ModelsOut)
def list_models(principal: Caller, ctx: Context) -> ModelsOut:
    """Every registered model: its defaults, and the limits a request is checked against."""
    return ModelsOut(
        models=[ModelOut(name=spec.name, description=spec.description, default=spec.name == DEFAULT_MODEL,
                         defaults=spec.defaults, limits=spec.limits)
                for spec in ctx.registry.specs()],
        quality_presets=list(QUALITY_PRESETS))
