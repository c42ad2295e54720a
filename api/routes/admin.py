"""Staff routes: users (admin and support read; admin writes), credit grants, key revocation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Caller, Context, require_admin, require_read_all
from api.routes.accounts import user_out
from api.schemas import CreditGrant, RoleChange, UserOut

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/users", response_model=list[UserOut])
def list_users(principal: Caller, ctx: Context, limit: Annotated[int, Query(ge=1, le=200)] = 50,
               after: Annotated[str | None, Query(max_length=64)] = None) -> list[UserOut]:
    require_read_all(principal)
    return [user_out(row) for row in ctx.users.list(limit=limit, after=after)]


@router.post("/users/{user_id}/credits", response_model=UserOut)
def grant_credits(user_id: str, body: CreditGrant, principal: Caller, ctx: Context) -> UserOut:
    """Add credits to a user's balance (a `grant` entry in their ledger)."""
    require_admin(principal)
    ctx.ledger.grant(user_id, body.amount, by=principal.user_id, note=body.note)
    return user_out(ctx.users.get(user_id))


@router.put("/users/{user_id}/role", response_model=UserOut)
def change_role(user_id: str, body: RoleChange, principal: Caller, ctx: Context) -> UserOut:
    require_admin(principal)
    return user_out(ctx.users.set_role(user_id, body.role))


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_any_key(key_id: int, principal: Caller, ctx: Context) -> None:
    require_admin(principal)
    ctx.keys.revoke(key_id)
