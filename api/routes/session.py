"""The web app's sign-in: the same accounts and tokens as ``/auth``, kept in httpOnly cookies
(see :mod:`api.session_cookies`). Every route here needs the CSRF token, signing in included (so
another site cannot sign a visitor into an account of its choosing)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.deps import Context
from api.routes.accounts import check_password, user_out
from api.schemas import Login, SessionOut
from api.session_cookies import REFRESH_COOKIE, check_csrf, clear_session, set_session
from videogen.errors import AuthenticationError

router = APIRouter(prefix="/api/v1/session", tags=["session"])


def _start(ctx, request: Request, response: Response, principal, refresh_token: str, *, new_csrf: bool) -> SessionOut:
    set_session(response, request, access_token=ctx.access_tokens.issue(principal),
                access_ttl_s=ctx.access_tokens.ttl_s, refresh_token=refresh_token,
                refresh_ttl_s=ctx.refresh_tokens.ttl_s, new_csrf=new_csrf)
    return SessionOut(user=user_out(ctx.users.get(principal.user_id)), expires_in=ctx.access_tokens.ttl_s)


@router.post("", response_model=SessionOut)
def sign_in(body: Login, request: Request, response: Response, ctx: Context) -> SessionOut:
    """Sign in with email and password: sets the session cookies."""
    check_csrf(request)
    principal = check_password(ctx, request, body)
    return _start(ctx, request, response, principal, ctx.refresh_tokens.start(principal.user_id), new_csrf=True)


@router.post("/refresh", response_model=SessionOut)
def refresh(request: Request, response: Response, ctx: Context) -> SessionOut:
    """A new access token for the refresh cookie (which rotates; one used twice ends the session)."""
    check_csrf(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise AuthenticationError("the session has ended: sign in again", code="session_ended")
    principal, successor = ctx.refresh_tokens.rotate(token)
    return _start(ctx, request, response, principal, successor, new_csrf=False)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(request: Request, response: Response, ctx: Context) -> None:
    """Sign out: the refresh token is revoked and the cookies are cleared."""
    check_csrf(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if token:
        ctx.refresh_tokens.revoke(token)
    clear_session(response)
