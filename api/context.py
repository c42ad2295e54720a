"""What every route needs, built once per process from :class:`videogen.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import sqlalchemy as sa

from videogen.accounts.credits import CreditLedger
from videogen.accounts.keys import ApiKeys
from videogen.accounts.ratelimit import SharedRateLimiter
from videogen.accounts.tokens import AccessTokens, RefreshTokens
from videogen.accounts.users import Users
from videogen.config import Settings
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import Account, JobStore
from videogen.lifecycle.one_trip import OneTripCalls
from videogen.secret_files import kept_secret

JWT_SECRET_FILE = "api-jwt-secret"


def jwt_secret(settings: Settings) -> str:
    """VIDEOGEN_API_JWT_SECRET, or (one machine, embedded defaults) a random key kept in
    VIDEOGEN_HOME so that every local API process and restart accepts the same tokens."""
    if settings.api_jwt_secret:
        return settings.api_jwt_secret
    return kept_secret(Path(settings.home) / JWT_SECRET_FILE)

@dataclass
class ApiContext:
    settings: Settings
    engine: sa.Engine
    registry: ModelRegistry = field(default_factory=ModelRegistry.from_env)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        # No pre-ping: it doubled the database round trips of every request (benchmarks/api_benchmark.py);
        # connections are recycled instead, and a request that meets a dropped connection fails once.
        # hide_parameters: a database error's text never carries a row's values (emails, prompts) into a log.
        engine = sa.create_engine(settings.database_url, pool_size=10, max_overflow=20, pool_recycle=300,
                                  hide_parameters=True)
        return cls(settings, engine, ModelRegistry.from_file(settings.model_registry_path or None))

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.engine)

    @cached_property
    def users(self) -> Users:
        return Users(self.engine)

    @cached_property
    def keys(self) -> ApiKeys:
        return ApiKeys(self.engine)

    @cached_property
    def access_tokens(self) -> AccessTokens:
        return AccessTokens(jwt_secret(self.settings), self.settings.api_access_token_ttl_s)

    @cached_property
    def refresh_tokens(self) -> RefreshTokens:
        return RefreshTokens(self.engine, self.settings.api_refresh_token_ttl_s)

    @cached_property
    def ledger(self) -> CreditLedger:
        return CreditLedger(self.engine)

    @cached_property
    def limiter(self) -> SharedRateLimiter:
        return SharedRateLimiter(self.engine, self.settings.api_rate_limit_per_s)

    @cached_property
    def auth_limiter(self) -> SharedRateLimiter:
        return SharedRateLimiter(self.engine, self.settings.api_auth_attempts_per_min, window_s=60)

    @cached_property
    def account_limits(self) -> Account:
        return Account(reserve_credits=True, max_active_jobs=self.settings.api_max_active_jobs)

    @cached_property
    def one_trip(self) -> OneTripCalls:
        """POST /jobs and GET /jobs/{id} when nothing in them needs refusing (asyncpg; its own pool, next
        to the engine's)."""
        return OneTripCalls(self.settings.database_url, limiter=self.limiter, registry=self.registry,
                            account=self.account_limits, max_connections=self.settings.api_db_connections)

    @cached_property
    def platform_metrics(self):
        from videogen.metrics.platform import PlatformCollector

        return PlatformCollector(self.engine, heartbeat_timeout_s=self.settings.heartbeat_timeout_s)

    @cached_property
    def storage(self):
        from videogen.storage.factory import storage_from_settings

        return storage_from_settings(self.settings)

    async def aclose(self) -> None:
        if "one_trip" in self.__dict__:
            await self.one_trip.close()
        self.close()

    def close(self) -> None:
        self.engine.dispose()
