"""jobs and job_events

Revision ID: 0001
Revises:

Written out in full (not derived from videogen.db.schema) so that later schema changes never
rewrite history.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("pending", "queued", "running", "succeeded", "failed", "rejected", "canceled")


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("negative_prompt", sa.Text, nullable=False, server_default=""),
        sa.Column("model", sa.Text, nullable=False, server_default="tiny"),
        sa.Column("width", sa.Text),
        sa.Column("height", sa.Text),
        sa.Column("num_frames", sa.Text),
        sa.Column("fps", sa.Text),
        sa.Column("steps", sa.Text),
        sa.Column("guidance_scale", sa.Text),
        sa.Column("seed", sa.Text),
        sa.Column("quality_preset", sa.Text, nullable=False, server_default="STANDARD"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("stage", sa.Text),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("queued_at", ts),
        sa.Column("started_at", ts),
        sa.Column("finished_at", ts),
        sa.Column("updated_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("submission", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_before", ts),
        sa.Column("heartbeat_at", ts),
        sa.Column("worker", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("output_uri", sa.Text),
        sa.Column("thumbnail_uri", sa.Text),
        sa.Column("output_size_bytes", sa.BigInteger),
        sa.Column("output_sha256", sa.Text),
        sa.Column("gpu_seconds", sa.Float),
        sa.Column("credits", sa.Numeric(18, 4)),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="jobs_status_check"
        ),
        sa.UniqueConstraint("user_id", "idempotency_key", name="jobs_user_idempotency_key"),
    )
    op.create_index("jobs_pending_idx", "jobs", ["id"], postgresql_where=sa.text("status = 'pending'"))
    op.create_index("jobs_status_idx", "jobs", ["status"])
    op.create_index("jobs_created_at_idx", "jobs", ["created_at"])
    op.create_index("jobs_user_created_idx", "jobs", ["user_id", "created_at"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("stage", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("job_events_job_id_idx", "job_events", ["job_id", "id"])
    # The first audit event is written by the database itself, so that rows inserted by any
    # producer (SQL, the CLI, the launchpad) start their trail the same way.
    op.execute("""
        CREATE FUNCTION jobs_record_submission() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO job_events (job_id, status, stage, message) VALUES (NEW.id, 'pending', 'submit', 'submitted');
            RETURN NEW;
        END $$;
    """)
    op.execute("""
        CREATE TRIGGER jobs_record_submission AFTER INSERT ON jobs
        FOR EACH ROW EXECUTE FUNCTION jobs_record_submission();
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_record_submission ON jobs")
    op.execute("DROP FUNCTION IF EXISTS jobs_record_submission()")
    op.drop_table("job_events")
    op.drop_table("jobs")
