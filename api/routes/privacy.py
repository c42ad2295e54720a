"""Erasing an account (GDPR right to erasure): the caller's own, or any account for an admin.

* ``DELETE /api/v1/users/me``: every role may erase their own account, ``support`` included (its
  read-only role is about other people's data, not about leaving); with an API key, the key needs the
  ``write`` scope (a read-only key cannot destroy the account it reads).
* ``DELETE /api/v1/users/{user_id}``: admin only. It also finishes an erasure that was interrupted
  (storage unavailable): the person can no longer authenticate to retry themselves.

The work is :class:`videogen.accounts.erasure.AccountEraser`; its docstring says what is removed and
what is kept. Afterwards the account's tokens and keys answer 401, and so does logging in.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.context import ApiContext
from api.deps import Caller, Context, require_admin
from api.errors import error_body
from api.schemas_admin import ErasureOut
from videogen.accounts.erasure import AccountEraser
from videogen.accounts.users import Principal
from videogen.errors import PermissionDeniedError, TransientError
from videogen.storage.base import StorageRequestRejectedError

router = APIRouter(prefix="/api/v1/users", tags=["privacy"])

RESPONSES = {503: {"description": "the storage could not be cleared; the account is locked, an admin can "
                                  "run the erasure again"}}


def require_own_erasure(principal: Principal) -> None:
    if "write" not in principal.scopes:
        raise PermissionDeniedError("this API key has the read scope only", code="read_only_key")


def _erase(ctx: ApiContext, user_id: str, requested_by: str) -> ErasureOut | JSONResponse:
    try:
        summary = AccountEraser(ctx.engine, ctx.storage, ctx.store).erase(user_id, requested_by=requested_by)
    except (TransientError, StorageRequestRejectedError) as exc:
        return JSONResponse(error_body(
            "erasure_incomplete",
            f"account {user_id} is locked and its jobs are canceled, but its stored outputs could not be "
            f"deleted ({exc.code}); an admin can finish with DELETE /api/v1/users/{user_id}"), status_code=503)
    return ErasureOut(**vars(summary))


@router.delete("/me", response_model=ErasureOut, responses=RESPONSES)
def erase_me(principal: Caller, ctx: Context):
    """Erase the caller's account: job outputs deleted, prompts and contact data removed, active jobs
    canceled (refunded), keys and sessions revoked. Job statistics are kept, anonymized."""
    require_own_erasure(principal)
    return _erase(ctx, principal.user_id, principal.user_id)


@router.delete("/{user_id}", response_model=ErasureOut, responses=RESPONSES)
def erase_user(user_id: str, principal: Caller, ctx: Context):
    """Erase any account (admin), as ``DELETE /users/me`` does for one's own."""
    require_admin(principal)
    return _erase(ctx, user_id, principal.user_id)
