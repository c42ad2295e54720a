"""Error types shared by every stage of a generation job.

The distinction that matters operationally is *permanent* vs *transient*: a permanent failure
(bad input) is never retried, a transient one (storage down, CUDA out of memory) is retried with
backoff before the job is marked ``failed``.
"""

from __future__ import annotations


class VideogenError(Exception):
    """Base class. ``code`` is stored in ``jobs.error_code``; ``str(self)`` in ``jobs.error_message``."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ValidationError(VideogenError):
    """The request can never succeed as written; the job goes to ``rejected`` and is not retried.

    ``field`` names the request field at fault, when there is one, so a form can show the message
    next to it.
    """

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class TransientError(VideogenError):
    """Worth retrying: the same request may succeed a little later."""

    code = "transient_error"


class StorageUnavailableError(TransientError):
    code = "storage_unavailable"


class StorageVerificationError(TransientError):
    """An uploaded object did not match what was sent (size or checksum)."""

    code = "storage_verification_failed"


class OutOfMemoryError(TransientError):
    code = "out_of_memory"


class JobCanceledError(VideogenError):
    """The job was canceled while a stage was working on it; stop without retrying."""

    code = "canceled"


class NotFoundError(VideogenError):
    """The thing asked for does not exist, or is not the caller's to see (HTTP 404)."""

    code = "not_found"


class JobNotFoundError(NotFoundError):
    code = "not_found"


class UserNotFoundError(NotFoundError):
    code = "user_not_found"


class InvalidTransitionError(VideogenError):
    """A status change that the lifecycle does not allow (e.g. cancel a succeeded job)."""

    code = "invalid_transition"


class AuthenticationError(VideogenError):
    """No credentials, or credentials that are expired, tampered with or revoked (HTTP 401)."""

    code = "unauthenticated"


class PermissionDeniedError(VideogenError):
    """Authenticated, but the role or the key's scopes do not allow this action (HTTP 403)."""

    code = "forbidden"


class ConflictError(VideogenError):
    """The request clashes with existing state, e.g. an email already registered (HTTP 409)."""

    code = "conflict"


class InsufficientCreditsError(VideogenError):
    """The user's balance does not cover the job (HTTP 402); ``missing`` says by how much."""

    code = "insufficient_credits"

    def __init__(self, message: str, *, required, balance, missing) -> None:
        super().__init__(message)
        self.required, self.balance, self.missing = required, balance, missing


class RateLimitedError(VideogenError):
    """Too many requests, or too many active jobs, for now (HTTP 429); retry after ``retry_after_s``."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
