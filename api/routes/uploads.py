"""Files for jobs: an audio prompt or a film's music, uploaded raw and checked at once, and the voices
a film's narration may use."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, Context, require_write
from api.schemas import UploadOut, VoiceOut, VoicesOut
from videogen.errors import ValidationError
from videogen.film.voices import VoiceRegistry
from videogen.storage.uploads import upload_key

router = APIRouter(prefix="/api/v1", tags=["uploads"])

# The name's extension keeps the container recognisable in the bucket; the content is what is checked.
EXTENSIONS = {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3",
              "audio/mp4": ".m4a", "audio/x-m4a": ".m4a", "audio/ogg": ".ogg"}


@router.post("/uploads", status_code=201, response_model=UploadOut,
             responses={413: {"description": "Larger than 10 MiB."},
                        422: {"description": "Not audio that can be decoded, silent, or too long."}})
async def upload(request: Request, principal: Caller, ctx: Context,
                 kind: Literal["audio_prompt", "music"] = Query(description="what the file is for")) -> UploadOut:
    """Store an audio file (WAV, MP3, M4A or OGG; the body, with its Content-Type) under your uploads and
    check it now: an audio prompt must hold speech-length audio (≤ 60 s, not silent), music must decode.
    Use the returned key as a job's ``audio_prompt_key`` or a storyboard's ``{"music": {"key": …}}``."""
    require_write(principal)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in EXTENSIONS:
        raise ValidationError(f"Content-Type {content_type or '(none)'!r} is not an accepted audio type; send one "
                              f"of {', '.join(sorted(set(EXTENSIONS)))}", code="invalid_upload", field="file")
    body = await request.body()
    if not body:
        raise ValidationError("the upload is empty", code="invalid_upload", field="file")
    # Decoding and storing block for a while: off the event loop, so other requests go on meanwhile.
    key, duration = await run_in_threadpool(_check_and_store, ctx, principal.user_id, body, content_type, kind)
    return UploadOut(key=key, size_bytes=len(body), duration_s=round(duration, 3))


def _check_and_store(ctx, user_id: str, body: bytes, content_type: str, kind: str) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix="videogen-upload-") as workdir:
        path = Path(workdir) / f"upload{EXTENSIONS[content_type]}"
        path.write_bytes(body)
        if kind == "audio_prompt":
            from videogen.audio_prompt import check_and_decode

            duration = check_and_decode(path)[1]
        else:
            from videogen.film.audio import check_music_file

            duration = check_music_file(path, key="the upload")
        key = upload_key(user_id, path, kind=kind.replace("_", "-"))
        ctx.storage.put_file(key, path, content_type)
    return key, duration


@router.get("/voices", response_model=VoicesOut)
def list_voices(principal: Caller, ctx: Context) -> VoicesOut:
    """The narration voices a storyboard may name."""
    voices = VoiceRegistry.from_file(ctx.settings.voice_registry_path)
    return VoicesOut(voices=[VoiceOut(name=name, description=voices.get(name).description,
                                      language=voices.get(name).language, default=name == voices.default_name)
                             for name in voices.names()])
