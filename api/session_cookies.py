"""The browser's session: JWT access and refresh tokens in httpOnly cookies, and a CSRF token.

Programs send ``Authorization: Bearer`` or ``X-API-Key``; the web app's pages send nothing but the
cookies the browser keeps. A cookie is sent with any request the browser makes to this origin, also a
form another site posts here, so every state-changing request authenticated by cookie must carry the
CSRF token in the ``X-CSRF-Token`` header (double submit: the page's script reads ``vg_csrf``, which
another site can neither read nor set). Cookies are ``Secure`` when the request came over HTTPS: behind
a TLS-terminating proxy, uvicorn takes the scheme from ``X-Forwarded-Proto`` of the addresses in
``FORWARDED_ALLOW_IPS`` (k8s/api/api.yaml sets it).
"""

from __future__ import annotations

import hmac
import secrets
import time

from fastapi import Request, Response

from videogen.errors import PermissionDeniedError

ACCESS_COOKIE = "vg_access"
REFRESH_COOKIE = "vg_refresh"
CSRF_COOKIE = "vg_csrf"
# Readable by the page's script, no secret: when the access cookie expires (epoch seconds). A page
# refreshes an expired session before its first call and sends a visitor without one straight to the
# sign-in page, instead of learning both from a 401.
SESSION_HINT_COOKIE = "vg_session"
CSRF_HEADER = "X-CSRF-Token"
# The refresh token is sent only to the routes that spend it.
REFRESH_PATH = "/api/v1/session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(response: Response, request: Request, *, access_token: str, access_ttl_s: int,
                refresh_token: str, refresh_ttl_s: int, new_csrf: bool) -> None:
    secure = _secure(request)
    response.set_cookie(ACCESS_COOKIE, access_token, max_age=access_ttl_s, path="/", httponly=True,
                        secure=secure, samesite="lax")
    response.set_cookie(REFRESH_COOKIE, refresh_token, max_age=refresh_ttl_s, path=REFRESH_PATH, httponly=True,
                        secure=secure, samesite="strict")
    response.set_cookie(SESSION_HINT_COOKIE, str(int(time.time()) + access_ttl_s), max_age=refresh_ttl_s, path="/",
                        httponly=False, secure=secure, samesite="strict")
    if new_csrf:
        # A new CSRF token with every sign-in (one seen before signing in is not reused after); not at a
        # refresh, where a write already in flight still carries the current one.
        set_csrf(response, request, secrets.token_urlsafe(32))


def clear_session(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH)
    response.delete_cookie(SESSION_HINT_COOKIE, path="/")


def set_csrf(response: Response, request: Request, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, path="/", httponly=False, secure=_secure(request), samesite="strict")


def ensure_csrf(response: Response, request: Request) -> None:
    """Pages give a browser its CSRF token before its first form (sign in included)."""
    if not request.cookies.get(CSRF_COOKIE):
        set_csrf(response, request, secrets.token_urlsafe(32))


def check_csrf(request: Request) -> None:
    """Refuse a state-changing cookie-authenticated request whose header does not repeat the cookie."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
        raise PermissionDeniedError("the CSRF token is missing or does not match: reload the page and try again",
                                    code="csrf_failed")
