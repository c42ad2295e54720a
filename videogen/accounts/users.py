"""Users: sign-up with a password (argon2), roles, and who a request acts as (:class:`Principal`)."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from videogen.db.schema import ROLES, users
from videogen.errors import AuthenticationError, ConflictError, UserNotFoundError, ValidationError

# Deliberately loose (the address is confirmed by use, not by a regex), but one line, one @, a dot.
EMAIL_PATTERN = re.compile(r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")
MAX_EMAIL = 254
MIN_PASSWORD, MAX_PASSWORD = 10, 256
# Hashing a password the attacker guesses costs as much as checking a real one: no timing oracle
# telling which emails are registered.
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# argon2 takes 64 MiB per hash by design: at most this many at once per process, so a burst of log-ins
# queues instead of exhausting the pod's memory.
_HASHING = threading.BoundedSemaphore(2)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the user, their role, and (for an API key) the key's scopes."""

    user_id: str
    email: str
    role: str
    scopes: frozenset[str] = frozenset({"read", "write"})
    key_id: int | None = None

    @property
    def can_write(self) -> bool:
        return self.role != "support" and "write" in self.scopes

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "write" in self.scopes

    @property
    def reads_everything(self) -> bool:
        return self.role in ("admin", "support")


def normalize_email(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValidationError("email must be a string", code="invalid_email", field="email")
    email = raw.strip()
    if len(email) > MAX_EMAIL or not EMAIL_PATTERN.match(email):
        shown = email if len(email) <= 60 else email[:60] + "…"
        raise ValidationError(f"email {shown!r} is not an email address", code="invalid_email", field="email")
    return email.lower()


def check_password(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValidationError("password must be a string", code="invalid_password", field="password")
    if "\x00" in raw:
        raise ValidationError("password must not contain NUL characters", code="invalid_password", field="password")
    if not MIN_PASSWORD <= len(raw) <= MAX_PASSWORD:
        raise ValidationError(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long "
                              f"(got {len(raw)})", code="invalid_password", field="password")
    return raw


def check_role(raw: Any) -> str:
    if raw not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, got {raw!r}", code="invalid_role")
    return raw


class Users:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, email: Any, password: Any | None, *, role: str = "user") -> dict[str, Any]:
        """A new account; ``password`` None makes an account that only API keys can use."""
        address = normalize_email(email)
        check_role(role)
        hashed = None
        if password is not None:
            with _HASHING:
                hashed = _hasher.hash(check_password(password))
        user_id = "u_" + secrets.token_hex(8)
        taken = ConflictError(f"an account with email {address!r} already exists", code="email_taken")
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(users.c.id).where(sa.func.lower(users.c.email) == address)).first():
                    raise taken
                conn.execute(users.insert().values(id=user_id, email=address, password_hash=hashed, role=role))
        except sa.exc.IntegrityError:  # a concurrent sign-up with the same email won
            raise taken from None
        return self.get(user_id)

    def set_password(self, user_id: str, password: Any) -> None:
        """Give an account a new password (an operator's reset, the demo account's known one); every
        session signed in with the old one ends (its refresh tokens are revoked)."""
        from videogen.accounts.tokens import RefreshTokens

        with _HASHING:
            hashed = _hasher.hash(check_password(password))
        with self.engine.begin() as conn:
            changed = conn.execute(users.update().where(users.c.id == user_id, users.c.deleted_at.is_(None))
                                   .values(password_hash=hashed)).rowcount
            if not changed:
                raise UserNotFoundError(f"user {user_id} does not exist")
            RefreshTokens.revoke_all(conn, user_id)

    def authenticate(self, email: Any, password: Any) -> Principal:
        """The account for this email and password, or one message whatever was wrong (no user enumeration)."""
        wrong = AuthenticationError("wrong email or password", code="invalid_credentials")
        try:
            address, candidate = normalize_email(email), check_password(password)
        except ValidationError:
            raise wrong from None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(sa.func.lower(users.c.email) == address,
                                                      users.c.deleted_at.is_(None))).mappings().first()
        try:
            with _HASHING:
                _hasher.verify(row["password_hash"] if row and row["password_hash"] else _DUMMY_HASH, candidate)
        except (VerificationError, InvalidHashError):
            raise wrong from None
        if row is None or not row["password_hash"]:
            raise wrong
        return Principal(row["id"], row["email"], row["role"])

    def get(self, user_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.id, users.c.email, users.c.role, users.c.credit_balance,
                                         users.c.created_at, users.c.deleted_at)
                               .where(users.c.id == user_id)).mappings().first()
        if row is None:
            raise UserNotFoundError(f"user {user_id} does not exist")
        return dict(row)

    def principal(self, user_id: str, conn: sa.Connection | None = None) -> Principal:
        """The active account behind a token (a deleted account's tokens stop working at once)."""
        if conn is None:
            with self.engine.connect() as own:
                return self.principal(user_id, own)
        row = conn.execute(sa.select(users.c.id, users.c.email, users.c.role)
                           .where(users.c.id == user_id, users.c.deleted_at.is_(None))).first()
        if row is None:
            raise AuthenticationError("the account of this token no longer exists", code="invalid_token")
        return Principal(row.id, row.email, row.role)

    def list(self, *, limit: int = 50, after: str | None = None) -> list[dict[str, Any]]:
        query = (sa.select(users.c.id, users.c.email, users.c.role, users.c.credit_balance, users.c.created_at,
                           users.c.deleted_at).order_by(users.c.id).limit(limit))
        if after:
            query = query.where(users.c.id > after)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def set_role(self, user_id: str, role: str) -> dict[str, Any]:
        check_role(role)
        with self.engine.begin() as conn:
            if conn.execute(users.update().where(users.c.id == user_id).values(role=role)).rowcount == 0:
                raise UserNotFoundError(f"user {user_id} does not exist")
        return self.get(user_id)

    def rotate_webhook_secret(self, user_id: str) -> str:
        """A new secret signing this user's webhooks (the old one stops at once); shown once."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(users.update().where(users.c.id == user_id, users.c.deleted_at.is_(None))
                            .values(webhook_secret=secret)).rowcount == 0:
                raise UserNotFoundError(f"user {user_id} does not exist")
        return secret

    def has_webhook_secret(self, user_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(users.c.webhook_secret).where(users.c.id == user_id)).scalar())

    def by_email(self, email: Any) -> dict[str, Any] | None:
        """The active account with this email, if any."""
        address = normalize_email(email)
        with self.engine.connect() as conn:
            user_id = conn.execute(sa.select(users.c.id).where(sa.func.lower(users.c.email) == address,
                                                               users.c.deleted_at.is_(None))).scalar()
        return None if user_id is None else self.get(user_id)
