"""Sign-up, login, token refresh and logout; the caller's own account, ledger and API keys."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Request, status

from api.deps import Caller, Context, require_write
from api.schemas import (ApiKeyCreate, ApiKeyCreated, ApiKeyOut, LedgerEntryOut, Login, MeOut, RefreshRequest, SignUp,
                         TokenPairOut, UserOut, WebhookSecretOut)
from videogen.accounts.users import Principal
from videogen.errors import PermissionDeniedError, RateLimitedError

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def user_out(row: dict) -> UserOut:
    return UserOut(**{**row, "credit_balance": str(row["credit_balance"])})


def _pair(ctx, principal: Principal, refresh_token: str) -> TokenPairOut:
    return TokenPairOut(access_token=ctx.access_tokens.issue(principal), refresh_token=refresh_token,
                        expires_in=ctx.access_tokens.ttl_s)


def limit_attempts(ctx, *keys: str) -> None:
    """Sign-up and log-in cost an argon2 hash each and guess passwords: a per-minute budget per client
    address (and per email), shared by every API process."""
    for key in keys:
        decision = ctx.auth_limiter.hit(key)
        if not decision.allowed:
            raise RateLimitedError(f"too many attempts; retry in {decision.retry_after_s} s",
                                   retry_after_s=decision.retry_after_s, code="too_many_attempts")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/signup", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def sign_up(body: SignUp, request: Request, ctx: Context) -> UserOut:
    """Create an account with the `user` role and no credits (an admin grants them)."""
    limit_attempts(ctx, f"signup-ip:{client_address(request)}")
    return user_out(ctx.users.create(body.email, body.password, role="user"))


@router.post("/auth/login", response_model=TokenPairOut)
def log_in(body: Login, request: Request, ctx: Context) -> TokenPairOut:
    principal = check_password(ctx, request, body)
    return _pair(ctx, principal, ctx.refresh_tokens.start(principal.user_id))


def check_password(ctx, request: Request, body: Login) -> Principal:
    """Email and password against the per-address and per-email attempt budgets (shared by the token
    login above and the web app's cookie sign-in)."""
    # The email as a digest: the rate-limit table holds no address (and no NUL a person might type).
    email_key = hashlib.sha256(body.email.strip().lower().encode(errors="replace")).hexdigest()[:32]
    limit_attempts(ctx, f"login-ip:{client_address(request)}", f"login-email:{email_key}")
    return ctx.users.authenticate(body.email, body.password)


@router.post("/auth/refresh", response_model=TokenPairOut)
def refresh(body: RefreshRequest, ctx: Context) -> TokenPairOut:
    """Spend a refresh token for a new pair. A token used twice revokes its whole session."""
    principal, successor = ctx.refresh_tokens.rotate(body.refresh_token)
    return _pair(ctx, principal, successor)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def log_out(body: RefreshRequest, ctx: Context) -> None:
    ctx.refresh_tokens.revoke(body.refresh_token)


@router.get("/me", response_model=MeOut)
def me(principal: Caller, ctx: Context) -> MeOut:
    """The caller's account, credit balance and latest ledger entries."""
    return MeOut(user=user_out(ctx.users.get(principal.user_id)),
                 ledger=[LedgerEntryOut(**{**e, "amount": str(e["amount"])}) for e in ctx.ledger.entries(principal.user_id)])


@router.post("/me/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
def create_api_key(body: ApiKeyCreate, principal: Caller, ctx: Context) -> ApiKeyCreated:
    """A key for programs (`X-API-Key` header). The response is the only time the key is shown."""
    require_write(principal)
    wider = sorted(set(body.scopes) - principal.scopes)
    if wider:
        raise PermissionDeniedError(f"a key cannot create a key with more scopes than its own (not {', '.join(wider)})",
                                    code="scope_escalation")
    issued = ctx.keys.create(principal.user_id, body.name, body.scopes)
    row = next(k for k in ctx.keys.list(principal.user_id) if k["id"] == issued.id)
    return ApiKeyCreated(**row, key=issued.key)


@router.get("/me/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(principal: Caller, ctx: Context) -> list[ApiKeyOut]:
    return [ApiKeyOut(**row) for row in ctx.keys.list(principal.user_id)]


@router.delete("/me/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_api_key(key_id: int, principal: Caller, ctx: Context) -> None:
    require_write(principal)
    ctx.keys.revoke(key_id, user_id=principal.user_id)


@router.post("/me/webhook-secret", status_code=status.HTTP_201_CREATED, response_model=WebhookSecretOut)
def rotate_webhook_secret(principal: Caller, ctx: Context) -> WebhookSecretOut:
    """A new secret for your webhooks' signatures (the previous one stops at once). Shown this once."""
    require_write(principal)
    return WebhookSecretOut(webhook_secret=ctx.users.rotate_webhook_secret(principal.user_id))
