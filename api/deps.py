"""FastAPI dependencies: the context, who is calling (X-API-Key, JWT bearer, or the web app's session
cookie with its CSRF token), and the rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from api.context import ApiContext
from api.session_cookies import ACCESS_COOKIE, check_csrf
from videogen.accounts.keys import lookup
from videogen.accounts.users import Principal
from videogen.errors import AuthenticationError, PermissionDeniedError, RateLimitedError, VideogenError
from videogen.lifecycle.one_trip import Credentials


async def context(request: Request) -> ApiContext:
    # async: a plain def dependency would be handed to a worker thread on every request.
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]


def authenticate(ctx: ApiContext, conn, authorization: str | None, api_key: str | None,
                 request: Request | None = None) -> Principal:
    if api_key is not None:
        return ctx.keys.authenticate(api_key.strip(), conn)
    if authorization is None and request is not None and request.cookies.get(ACCESS_COOKIE):
        check_csrf(request)  # a browser's cookie session: writes must repeat the CSRF token
        return ctx.users.principal(ctx.access_tokens.subject(request.cookies[ACCESS_COOKIE]), conn)
    if authorization is None:
        raise AuthenticationError("authentication required: send 'Authorization: Bearer <access token>' "
                                  "or 'X-API-Key: <key>'", code="unauthenticated")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <access token>'", code="invalid_token")
    return ctx.users.principal(ctx.access_tokens.subject(token.strip()), conn)


def caller(
    ctx: Context,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Principal:
    """Who calls, counted against their rate limit: one transaction for both (every request pays it)."""
    with ctx.engine.begin() as conn:
        principal = authenticate(ctx, conn, authorization, x_api_key, request)
        decision = ctx.limiter.hit(principal.user_id, conn=conn)
    if not decision.allowed:
        raise RateLimitedError(f"more than {ctx.limiter.limit} requests per second; retry in "
                               f"{decision.retry_after_s} s", retry_after_s=decision.retry_after_s)
    return principal


Caller = Annotated[Principal, Depends(caller)]


def presented(ctx: ApiContext, authorization: str | None, api_key: str | None, request: Request) -> Credentials | None:
    """The credentials as :func:`authenticate` reads them, checked as far as no database is needed (a key
    shaped like one; an access token's signature, expiry and, from a cookie, the CSRF token). None
    when anything is wrong with them: :func:`caller` then says what."""
    try:
        if api_key is not None:
            found = lookup(api_key.strip())
            return None if found is None else Credentials(key_prefix=found[0], key_hash=found[1])
        if authorization is None and request.cookies.get(ACCESS_COOKIE):
            check_csrf(request)
            return Credentials(token_user=ctx.access_tokens.subject(request.cookies[ACCESS_COOKIE]))
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return Credentials(token_user=ctx.access_tokens.subject(token.strip()))
    except VideogenError:
        return None


def viewer(
    ctx: Context,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
) -> Principal:
    """Who fetches a file (a thumbnail, a video's byte ranges): authenticated, not counted against the
    per-second limit. One "My videos" page loads two dozen thumbnails at once and a player asks for
    many ranges; with S3 these are presigned links that never reach the API either."""
    with ctx.engine.connect() as conn:
        return authenticate(ctx, conn, authorization, x_api_key, request)


Viewer = Annotated[Principal, Depends(viewer)]


def require_write(principal: Principal) -> None:
    if principal.role == "support":
        raise PermissionDeniedError("support accounts are read-only", code="read_only_role")
    if "write" not in principal.scopes:
        raise PermissionDeniedError("this API key has the read scope only", code="read_only_key")


def require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise PermissionDeniedError("this action needs the admin role", code="admin_only")
    require_write(principal)


def require_read_all(principal: Principal) -> None:
    if not principal.reads_everything:
        raise PermissionDeniedError("this action needs the admin or support role", code="staff_only")
