"""Request and response bodies of the API (pydantic). Requests refuse unknown fields and coercions
(strict): ``"64"`` is not a width, a typo'd field is an error rather than a silently ignored option."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from videogen.db.schema import ROLES, STATUSES
from videogen.generation.registry import ModelDefaults, ModelLimits

Status = Literal[STATUSES]  # type: ignore[valid-type]
Role = Literal[ROLES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SignUp(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class Login(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class RefreshRequest(Strict):
    refresh_token: str = Field(max_length=200)


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    credit_balance: str
    created_at: datetime
    deleted_at: datetime | None = None


class SessionOut(BaseModel):
    user: UserOut
    expires_in: int = Field(description="seconds until the access cookie expires (refresh before)")


class LedgerEntryOut(BaseModel):
    id: int
    kind: str
    amount: str
    job_id: int | None
    submission: int | None
    note: str | None
    created_at: datetime


class MeOut(BaseModel):
    user: UserOut
    ledger: list[LedgerEntryOut]


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "write"]] = Field(default_factory=lambda: ["read", "write"], min_length=1)


class ApiKeyOut(BaseModel):
    id: int
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself, shown this once; only a hash is stored.")


class JobCreate(Strict):
    prompt: str = Field(description="What the video shows (1 to 2000 characters); for a film, its title.")
    negative_prompt: str = ""
    model: str | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    quality_preset: str | None = None
    priority: int = Field(default=0, ge=-100, le=100)
    callback_url: str | None = Field(default=None, max_length=2048, description=(
        "POSTed a signed JSON body when the job reaches a final status (needs a webhook secret: "
        "POST /api/v1/me/webhook-secret). Public http(s) addresses only."))
    audio_prompt_key: str | None = Field(default=None, max_length=1024, description=(
        "A spoken prompt (the key POST /api/v1/uploads?kind=audio_prompt returned): transcribed offline by the run, "
        "the transcript becomes the prompt (send prompt as \"\")."))
    storyboard: dict[str, Any] | None = Field(default=None, description=(
        "Makes the job a film: {\"scenes\": [{\"prompt\", \"duration_s\", \"narration\", \"transition\": "
        "\"cut\"|\"crossfade\"}], \"voice\", \"music\": \"none\"|\"generated\"|{\"key\"}, \"subtitles\": "
        "\"none\"|\"sidecar\"|\"burned\"}; the other parameters are every scene's defaults."))


Scalar = str | int | float | None


class JobDraft(BaseModel):
    """A request as a form holds it, for ``POST /jobs/quote``: every parameter may still be text
    (``"64"``), checked by the same rules as a submission and answered with the same messages."""

    model_config = ConfigDict(extra="forbid")

    prompt: Scalar = None
    negative_prompt: Scalar = None
    model: Scalar = None
    width: Scalar = None
    height: Scalar = None
    num_frames: Scalar = None
    fps: Scalar = None
    steps: Scalar = None
    guidance_scale: Scalar = None
    seed: Scalar = None
    quality_preset: Scalar = None
    audio_prompt_key: str | None = Field(default=None, max_length=1024, description=(
        "An uploaded audio prompt: then an empty prompt is priced (the transcript is checked by the run)."))
    storyboard: dict[str, Any] | None = None


class ProblemOut(BaseModel):
    code: str
    message: str
    field: str | None = Field(description="the request field at fault, when there is one")


class QuoteOut(BaseModel):
    valid: bool
    error: ProblemOut | None = Field(description="why the draft would be rejected (null when valid)")
    request: dict[str, Any] | None = Field(description="the parameters a submission would use, typed and "
                                                       "with the model's defaults filled in (seed null when "
                                                       "not chosen: one is drawn at submission)")
    credits: str | None = Field(description="the price of the job in credits")
    balance: str
    missing: str | None = Field(description="credits missing from the balance to afford it (null when it does)")


class ModelOut(BaseModel):
    name: str
    description: str
    default: bool
    defaults: ModelDefaults  # the registry's own dataclasses: one definition of the fields
    limits: ModelLimits


class ModelsOut(BaseModel):
    models: list[ModelOut]
    quality_presets: list[str]


class JobError(BaseModel):
    code: str
    message: str | None


class JobOut(BaseModel):
    id: int
    user_id: str
    status: str
    stage: str | None
    progress: float
    queue_position: int | None = Field(description="Jobs ahead of this one in the queue (pending or queued).")
    prompt: str
    negative_prompt: str
    model: str
    parameters: dict[str, Any]
    priority: int
    submission: int
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    credits: str | None
    gpu_seconds: float | None
    video_url: str | None
    thumbnail_url: str | None
    error: JobError | None
    storyboard: dict[str, Any] | None = Field(default=None, description="The film's storyboard (null for a clip).")
    transcript: str | None = Field(default=None, description="An audio prompt's transcript (null otherwise).")


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class JobEventOut(BaseModel):
    id: int
    status: str
    stage: str | None
    message: str | None
    run_id: str | None
    created_at: datetime


class CreditGrant(Strict):
    amount: str | int | float = Field(description="Credits to add, > 0, at most 4 decimals.")
    note: str | None = Field(default=None, max_length=500)


class RoleChange(Strict):
    role: Role  # type: ignore[valid-type]


class WebhookSecretOut(BaseModel):
    webhook_secret: str = Field(description="Signs your webhooks (HMAC-SHA256); shown this once.")


class UploadOut(BaseModel):
    key: str = Field(description="The object's key: a job's audio_prompt_key, or a storyboard's music key.")
    size_bytes: int
    duration_s: float


class VoiceOut(BaseModel):
    name: str
    description: str
    language: str = Field(description="BCP 47 tag of the language it speaks (empty when the registry does not say)")
    default: bool


class VoicesOut(BaseModel):
    voices: list[VoiceOut]
