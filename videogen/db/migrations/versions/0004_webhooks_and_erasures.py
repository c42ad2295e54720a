"""webhooks (jobs.callback_url, deliveries and their attempts) and recorded account erasures

Revision ID: 0004
Revises: 0003

Written out in full (not derived from videogen.db.schema) so that later schema changes never
rewrite history.

- ``jobs.callback_url``: where the platform POSTs the job's final status (API submissions).
- ``webhook_deliveries``: one per job final status that has a callback, created in the same
  transaction as the status change (so a delivery is never forgotten), delivered by a Dagster sensor.
- ``webhook_attempts``: every HTTP attempt of a delivery (status code or error, duration).
- ``account_erasures``: each GDPR erasure (who asked, when, what was removed); the user id it keeps
  is the anonymized one, so the record itself holds no personal data.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DELIVERY_STATES = ("pending", "delivered", "failed")


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.add_column("jobs", sa.Column("callback_url", sa.Text))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("delivered_at", ts),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATES) + ")",
                           name="webhook_deliveries_state_check"),
    )
    op.create_index("webhook_deliveries_due_idx", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("webhook_deliveries_job_idx", "webhook_deliveries", ["job_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
    )
    op.create_index("webhook_attempts_delivery_idx", "webhook_attempts", ["delivery_id", "id"])
    op.create_table(
        "account_erasures",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("anonymized_user_id", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("jobs_anonymized", sa.Integer, nullable=False),
        sa.Column("objects_deleted", sa.Integer, nullable=False),
        sa.Column("keys_revoked", sa.Integer, nullable=False),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.drop_table("account_erasures")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_column("jobs", "callback_url")
