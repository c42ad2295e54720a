"""Accounts of the HTTP API: users and roles (``users``), API keys (``keys``), access and refresh tokens
(``tokens``), the credit ledger (``credits``) and the shared rate limit (``ratelimit``).

Plain Python over SQLAlchemy Core, used by the API routes (``api/``), the CLI and the job lifecycle;
tested without them. Import the submodules directly: the lifecycle (which runs inside every Dagster
run) needs only ``credits``, not the password and token libraries.
"""
