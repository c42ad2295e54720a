"""API keys for programs: ``vg_<prefix>_<secret>``; only a SHA-256 of the whole key is stored.

The prefix (public, shown in listings) finds the row; the hash comparison is constant-time. Keys are
256-bit random strings, so a fast hash is as safe as a slow one and keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from videogen.accounts.users import Principal
from videogen.db.schema import api_keys, users
from videogen.errors import AuthenticationError, NotFoundError, ValidationError

KEY_SCOPES = ("read", "write")
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEY_NAME = 100


@dataclass(frozen=True)
class IssuedKey:
    id: int
    prefix: str
    key: str  # shown once, at creation; never stored nor logged


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def lookup(key: Any) -> tuple[str, str] | None:
    """What finds and checks a presented key: its prefix and the SHA-256 stored for it; None when it
    is not shaped like a key at all."""
    parts = key.split("_") if isinstance(key, str) else []
    if len(parts) < 3 or parts[0] != "vg" or not parts[1]:
        return None
    return parts[1], _digest(key)


def check_scopes(raw: Any) -> list[str]:
    scopes = list(raw) if isinstance(raw, (list, tuple)) else None
    if not scopes or any(s not in KEY_SCOPES for s in scopes):
        raise ValidationError(f"scopes must be a non-empty list of {', '.join(KEY_SCOPES)}, got {raw!r}",
                              code="invalid_scopes")
    return sorted(set(scopes))


class ApiKeys:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, user_id: str, name: Any, scopes: Any = ("read", "write")) -> IssuedKey:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_KEY_NAME or "\x00" in name:
            raise ValidationError(f"name must be 1 to {MAX_KEY_NAME} characters (no NUL)", code="invalid_name", field="name")
        wanted = check_scopes(scopes)
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = f"vg_{prefix}_{secret}"
        with self.engine.begin() as conn:
            key_id = conn.execute(api_keys.insert().values(
                user_id=user_id, name=name.strip(), prefix=prefix, key_hash=_digest(key), scopes=wanted,
            ).returning(api_keys.c.id)).scalar_one()
        return IssuedKey(key_id, prefix, key)

    def authenticate(self, key: str, conn: sa.Connection | None = None) -> Principal:
        """The account of a valid, unrevoked key. In ``conn``'s transaction when given (the API checks
        the key and counts the request against the rate limit in one transaction)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.authenticate(key, own)
        invalid = AuthenticationError("invalid API key", code="invalid_api_key")
        found = lookup(key)
        if found is None:
            raise invalid
        prefix, digest = found
        row = conn.execute(
            sa.select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.scopes, api_keys.c.revoked_at,
                      api_keys.c.last_used_at, users.c.id.label("user_id"), users.c.email, users.c.role,
                      users.c.deleted_at)
            .join(users, users.c.id == api_keys.c.user_id).where(api_keys.c.prefix == prefix)
        ).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            raise invalid
        if row.revoked_at is not None:
            raise AuthenticationError("this API key has been revoked", code="revoked_api_key")
        if row.deleted_at is not None:
            raise invalid
        # "Last used" to the minute: one write a minute per key, not one per request.
        if row.last_used_at is None or row.last_used_at < datetime.now(UTC) - LAST_USED_RESOLUTION:
            conn.execute(api_keys.update().where(api_keys.c.id == row.id).values(last_used_at=sa.func.now()))
        return Principal(row.user_id, row.email, row.role, frozenset(row.scopes), row.id)

    def list(self, user_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(api_keys.c.id, api_keys.c.user_id, api_keys.c.name, api_keys.c.prefix, api_keys.c.scopes,
                          api_keys.c.created_at, api_keys.c.last_used_at, api_keys.c.revoked_at).order_by(api_keys.c.id)
        if user_id is not None:
            query = query.where(api_keys.c.user_id == user_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def revoke(self, key_id: int, *, user_id: str | None = None) -> None:
        """Revoke a key (``user_id`` given: only if it is theirs; else 404 so ids do not leak)."""
        conditions = [api_keys.c.id == key_id]
        if user_id is not None:
            conditions.append(api_keys.c.user_id == user_id)
        with self.engine.begin() as conn:
            found = conn.execute(api_keys.update().where(*conditions)
                                 .values(revoked_at=sa.func.coalesce(api_keys.c.revoked_at, sa.func.now()))
                                 .returning(api_keys.c.id)).first()
        if found is None:
            raise NotFoundError(f"API key {key_id} does not exist")

    def revoke_all(self, conn: sa.Connection, user_id: str) -> int:
        return conn.execute(api_keys.update().where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                            .values(revoked_at=sa.func.now())).rowcount
