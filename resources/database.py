"""PostgreSQL connection for ops, sensors and assets."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
import sqlalchemy as sa

from videogen.config import env_var, normalize_database_url


class PostgresResource(dg.ConfigurableResource):
    """The application database (``jobs``, ``job_events``, KPI tables).

    ``database_url`` comes from the ``DATABASE_URL`` environment variable (an ``EnvVar`` secret: it
    carries the password and is never shown in the UI or logs).
    """

    database_url: str

    @cached_property
    def _engine(self) -> sa.Engine:
        return sa.create_engine(normalize_database_url(self.database_url), pool_pre_ping=True, pool_size=3)

    def get_engine(self) -> sa.Engine:
        return self._engine


def database_url_env_var() -> dg.EnvVar:
    """``DATABASE_URL`` as an ``EnvVar``: resolved when a run starts, never shown (it holds the password)."""
    return dg.EnvVar(env_var("database_url"))


def postgres_from_env() -> PostgresResource:
    return PostgresResource(database_url=database_url_env_var())
