"""Short-lived JWT access tokens and rotating, revocable refresh tokens.

Access tokens (HS256, ``VIDEOGEN_API_JWT_SECRET``) are checked without a database read for the
signature and expiry; the account is still looked up, so a deleted user's token stops at once.
Refresh tokens are opaque random strings stored as SHA-256. Each use returns a new one in the same
*family* and marks the old one used; a used token presented again means it was copied, and the whole
family is revoked (OAuth 2.0 Security BCP, refresh token rotation).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import sqlalchemy as sa

from videogen.accounts.users import Principal
from videogen.db.schema import refresh_tokens, users
from videogen.errors import AuthenticationError

ALGORITHM = "HS256"
ISSUER = "videogen"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class AccessTokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT signing key must be at least {MIN_SECRET_BYTES} bytes long")
        self._secret, self.ttl_s = secret, ttl_s

    def __repr__(self) -> str:
        return f"AccessTokens(ttl_s={self.ttl_s}, secret=<redacted>)"

    def issue(self, principal: Principal, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"sub": principal.user_id, "role": principal.role, "iss": ISSUER, "typ": "access",
                  "iat": issued, "exp": issued + self.ttl_s, "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def subject(self, token: str) -> str:
        """The user id of a valid token; the reason in the message otherwise (never the token)."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "iss"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the access token has expired; refresh it", code="token_expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationError("the access token is invalid", code="invalid_token") from None
        if claims.get("typ") != "access":
            raise AuthenticationError("the access token is invalid", code="invalid_token")
        return str(claims["sub"])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    def __init__(self, engine: sa.Engine, ttl_s: int) -> None:
        self.engine, self.ttl_s = engine, ttl_s

    def issue(self, conn: sa.Connection, user_id: str, family: str | None = None) -> str:
        token = secrets.token_urlsafe(32)
        conn.execute(refresh_tokens.insert().values(
            user_id=user_id, family=family or secrets.token_hex(8), token_hash=_digest(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.ttl_s)))
        return token

    def start(self, user_id: str) -> str:
        with self.engine.begin() as conn:
            return self.issue(conn, user_id)

    def rotate(self, token: str) -> tuple[Principal, str]:
        """Spend a refresh token: the account it belongs to and its successor."""
        invalid = AuthenticationError("the refresh token is invalid", code="invalid_refresh_token")
        if not isinstance(token, str) or not token:
            raise invalid
        reused = False
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(refresh_tokens, users.c.email, users.c.role, users.c.deleted_at)
                .join(users, users.c.id == refresh_tokens.c.user_id)
                .where(refresh_tokens.c.token_hash == _digest(token)).with_for_update(of=refresh_tokens)
            ).mappings().first()
            if row is None or row["deleted_at"] is not None:
                raise invalid
            if row["revoked_at"] is not None:
                raise AuthenticationError("the refresh token has been revoked; log in again",
                                          code="revoked_refresh_token")
            if row["expires_at"] <= datetime.now(UTC):
                raise AuthenticationError("the refresh token has expired; log in again",
                                          code="expired_refresh_token")
            if row["used_at"] is not None:
                reused = True
                self._revoke_family(conn, row["family"])
            else:
                conn.execute(refresh_tokens.update().where(refresh_tokens.c.id == row["id"])
                             .values(used_at=sa.func.now()))
                successor = self.issue(conn, row["user_id"], row["family"])
        if reused:  # after the commit: the family stays revoked
            raise AuthenticationError("this refresh token was already used: every token of its session is "
                                      "revoked; log in again", code="refresh_token_reused")
        return Principal(row["user_id"], row["email"], row["role"]), successor

    def revoke(self, token: str) -> None:
        with self.engine.begin() as conn:
            family = conn.execute(sa.select(refresh_tokens.c.family)
                                  .where(refresh_tokens.c.token_hash == _digest(token))).scalar()
            if family is not None:
                self._revoke_family(conn, family)

    @staticmethod
    def _revoke_family(conn: sa.Connection, family: str) -> None:
        conn.execute(refresh_tokens.update().where(refresh_tokens.c.family == family,
                                                   refresh_tokens.c.revoked_at.is_(None))
                     .values(revoked_at=sa.func.now()))

    @staticmethod
    def revoke_all(conn: sa.Connection, user_id: str) -> None:
        conn.execute(refresh_tokens.update().where(refresh_tokens.c.user_id == user_id,
                                                   refresh_tokens.c.revoked_at.is_(None))
                     .values(revoked_at=sa.func.now()))
