"""KPI tables built by Spark, and the read-only analyst role

Revision ID: 0002
Revises: 0001

Written out in full (not derived from videogen.kpi.tables) so that later changes never rewrite
history.

Analyst access (``videogen_analyst``, a NOLOGIN group role; analysts log in with their own roles that
are members of it):

- SELECT on both KPI tables;
- SELECT on the non-sensitive columns of ``jobs`` (ids, parameters, lifecycle, metering), so that an
  analyst can drill down from a KPI to the jobs behind it. Prompts, negative prompts, error messages
  (which may echo the prompt), idempotency keys, output locations and run ids stay private:
  ``SELECT * FROM jobs`` is refused on purpose;
- nothing on ``job_events`` and no blanket ``ALTER DEFAULT PRIVILEGES``: a default grant would make
  every future table of the application readable, including ones holding user content. Each later
  KPI migration grants its own table explicitly.

Roles are cluster-wide, so the role is created only if missing. Creating it needs CREATEROLE; when
the migrating user lacks it (a locked-down production login), the migration still succeeds, warns,
and skips the grants; a DBA then creates the role and re-runs ``grant_analyst_access`` below by hand
(see docs/kpi.md). The downgrade drops the tables and revokes the column grants but keeps the role:
other databases of the cluster may still grant to it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ANALYST_ROLE = "videogen_analyst"
KPI_TABLES = ("kpi_spark_daily", "kpi_spark_daily_by_model")
# Columns of `jobs` an analyst may read (see the module docstring for what is left out and why).
JOBS_ANALYST_COLUMNS = (
    "id", "user_id", "model", "width", "height", "num_frames", "fps", "steps", "guidance_scale",
    "seed", "quality_preset", "priority", "status", "stage", "created_at", "queued_at", "started_at",
    "finished_at", "updated_at", "attempts", "output_size_bytes", "gpu_seconds", "credits",
    "error_code",
)


def _count(name: str, comment: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger, nullable=False, comment=comment)


def _seconds(name: str, comment: str) -> sa.Column:
    return sa.Column(name, DOUBLE_PRECISION, comment=comment)


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "kpi_spark_daily",
        sa.Column("job_date", sa.Date, primary_key=True, comment="UTC date of jobs.created_at"),
        _count("total_jobs", "all jobs created that day, every status"),
        _count("succeeded_jobs", "jobs in status succeeded"),
        _count("failed_jobs", "jobs in status failed"),
        _count("rejected_jobs", "jobs in status rejected (failed validation)"),
        _count("canceled_jobs", "jobs in status canceled"),
        sa.Column(
            "success_rate", DOUBLE_PRECISION,
            comment="succeeded / (succeeded + failed); NULL when both are 0",
        ),
        _count("active_users", "distinct user_id"),
        _seconds("avg_duration_s", "mean of finished_at - started_at over succeeded jobs"),
        _seconds("median_duration_s", "exact median (percentile_cont 0.5) of the duration"),
        _seconds("p95_duration_s", "exact p95 (percentile_cont 0.95) of the duration"),
        _seconds("avg_latency_s", "mean of finished_at - created_at over succeeded jobs"),
        sa.Column(
            "credits_consumed", sa.Numeric(28, 4), nullable=False,
            comment="sum of credits over all jobs of the day (NULLs ignored, 0 when none)",
        ),
        sa.Column(
            "gpu_seconds", DOUBLE_PRECISION, nullable=False,
            comment="sum of gpu_seconds over all jobs of the day (NULLs ignored, 0 when none)",
        ),
        sa.Column("computed_at", ts, nullable=False, comment="when this row was written"),
        comment="Daily job KPIs (UTC days), written by Spark; one row per day, including days without jobs",
    )
    op.create_table(
        "kpi_spark_daily_by_model",
        sa.Column("job_date", sa.Date, nullable=False, comment="UTC date of jobs.created_at"),
        sa.Column("model", sa.Text, nullable=False, comment="jobs.model as submitted"),
        _count("jobs", "all jobs of that model created that day"),
        _count("succeeded_jobs", "jobs in status succeeded"),
        _count("failed_jobs", "jobs in status failed"),
        sa.Column(
            "success_rate", DOUBLE_PRECISION,
            comment="succeeded / (succeeded + failed); NULL when both are 0",
        ),
        _seconds("median_duration_s", "exact median (percentile_cont 0.5) of finished_at - started_at, succeeded jobs"),
        _seconds("p95_duration_s", "exact p95 (percentile_cont 0.95) of the same duration"),
        sa.Column("gpu_seconds", DOUBLE_PRECISION, nullable=False, comment="sum of gpu_seconds (NULLs ignored)"),
        sa.Column("credits_consumed", sa.Numeric(28, 4), nullable=False, comment="sum of credits (NULLs ignored)"),
        sa.Column("computed_at", ts, nullable=False, comment="when this row was written"),
        sa.PrimaryKeyConstraint("job_date", "model", name="kpi_spark_daily_by_model_pkey"),
        comment="Daily job KPIs per model (UTC days), written by Spark; days without jobs have no rows",
    )
    create_analyst_role()
    grant_analyst_access()


def create_analyst_role() -> None:
    # duplicate_object: another database of the same cluster created it a moment ago.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
                BEGIN
                    CREATE ROLE {ANALYST_ROLE} NOLOGIN;
                EXCEPTION
                    WHEN duplicate_object THEN NULL;
                    WHEN insufficient_privilege THEN
                        RAISE WARNING 'role {ANALYST_ROLE} not created: % lacks CREATEROLE. '
                            'Ask a DBA to run CREATE ROLE {ANALYST_ROLE} NOLOGIN and the GRANTs of '
                            'docs/kpi.md', current_user;
                END;
            END IF;
        END $$;
        """
    )


def grant_analyst_access() -> None:
    tables = ", ".join(KPI_TABLES)
    columns = ", ".join(JOBS_ANALYST_COLUMNS)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
                GRANT SELECT ON {tables} TO {ANALYST_ROLE};
                GRANT SELECT ({columns}) ON jobs TO {ANALYST_ROLE};
            END IF;
        END $$;
        """
    )


def downgrade() -> None:
    columns = ", ".join(JOBS_ANALYST_COLUMNS)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ANALYST_ROLE}') THEN
                REVOKE SELECT ({columns}) ON jobs FROM {ANALYST_ROLE};
            END IF;
        END $$;
        """
    )
    op.drop_table("kpi_spark_daily_by_model")
    op.drop_table("kpi_spark_daily")
