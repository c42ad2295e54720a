"""The read-only analyst role created by migration 0002."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from videogen.db.migrate import downgrade, upgrade

ANALYST = "videogen_analyst"


@pytest.fixture
def analyst_engine(engine, database_url):
    """A login role that is a member of the analyst group role, like a real analyst's."""
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {login} LOGIN PASSWORD 'analyst-pw' IN ROLE {ANALYST}"))
    analyst = sa.create_engine(make_url(database_url).set(username=login, password="analyst-pw"))
    yield analyst
    analyst.dispose()
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE {login}"))


def test_the_analyst_role_exists_and_cannot_log_in(engine):
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = :r"), {"r": ANALYST}).one()
    assert tuple(row) == (False, False)


def test_analysts_read_the_kpis_and_nothing_else(engine, analyst_engine):
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'a secret prompt')"))
        conn.execute(sa.text(
            "INSERT INTO kpi_spark_daily (job_date, total_jobs, succeeded_jobs, failed_jobs, rejected_jobs, canceled_jobs, "
            "active_users, credits_consumed, gpu_seconds, computed_at) VALUES ('2025-03-10', 1, 0, 0, 0, 0, 1, 0, 0, now())"
        ))
    with analyst_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM kpi_spark_daily ORDER BY job_date DESC LIMIT 10")).all()
        assert conn.execute(sa.text("SELECT count(*) FROM kpi_spark_daily_by_model")).scalar_one() == 0
        # Drill-down columns of jobs are readable; the prompt is not.
        assert conn.execute(sa.text("SELECT id, user_id, model, status, created_at, credits FROM jobs")).all()

    refused = [
        "INSERT INTO kpi_spark_daily (job_date, total_jobs, succeeded_jobs, failed_jobs, rejected_jobs, canceled_jobs, "
        "active_users, credits_consumed, gpu_seconds, computed_at) VALUES ('2025-03-11', 0, 0, 0, 0, 0, 0, 0, 0, now())",
        "UPDATE kpi_spark_daily SET total_jobs = 0",
        "DELETE FROM kpi_spark_daily_by_model",
        "TRUNCATE kpi_spark_daily",
        "SELECT prompt FROM jobs",
        "SELECT * FROM jobs",
        "SELECT * FROM job_events",
        "INSERT INTO jobs (user_id, prompt) VALUES ('x', 'y')",
        "CREATE TABLE analyst_scratch (x int)",
    ]
    for statement in refused:
        with analyst_engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text(statement))
            conn.commit()


def test_the_grants_survive_a_downgrade_and_upgrade(database_url, analyst_engine):
    downgrade(database_url, "0001")
    upgrade(database_url)
    upgrade(database_url)  # a second upgrade is a no-op
    with analyst_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM kpi_spark_daily")).scalar_one() == 0
