"""accounts, API keys, refresh tokens, the credit ledger and the shared rate-limit counters

Revision ID: 0003
Revises: 0002

Written out in full (not derived from videogen.db.schema) so that later schema changes never
rewrite history.

- ``users``: one row per account. ``id`` is what ``jobs.user_id`` holds for jobs submitted through
  the API (rows inserted by SQL or the CLI keep any text there). ``credit_balance`` moves only in
  the same transaction as a ``credit_ledger`` row, and never below zero (a CHECK).
- ``api_keys``: only a SHA-256 of each key is stored (keys are 256-bit random strings, so a fast
  hash is enough); ``prefix`` is the public part shown in listings and used to find the row.
- ``refresh_tokens``: SHA-256 of opaque tokens, grouped in rotation families; a token used twice
  revokes its family (a stolen token is worth one use at most).
- ``credit_ledger``: every change of a balance. A job has at most one reservation and one refund per
  submission (unique index), which is what makes refunds exactly-once.
- ``api_rate_limits``: one counter per user and one-second window, shared by every API process.
  UNLOGGED: losing the counters in a crash only forgets the last second.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLES = ("user", "support", "admin")
LEDGER_KINDS = ("grant", "reserve", "refund", "adjust")


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("role", sa.Text, nullable=False, server_default="user"),
        sa.Column("credit_balance", sa.Numeric(18, 4), nullable=False, server_default="0"),
        sa.Column("webhook_secret", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("deleted_at", ts),
        sa.CheckConstraint("role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="users_role_check"),
        sa.CheckConstraint("credit_balance >= 0", name="users_credit_balance_check"),
    )
    op.create_index("users_email_idx", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("scopes", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("last_used_at", ts),
        sa.Column("revoked_at", ts),
    )
    op.create_index("api_keys_user_idx", "api_keys", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", ts, nullable=False),
        sa.Column("used_at", ts),
        sa.Column("revoked_at", ts),
    )
    op.create_index("refresh_tokens_family_idx", "refresh_tokens", ["family"])
    op.create_table(
        "credit_ledger",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("submission", sa.Integer),
        sa.Column("note", sa.Text),
        sa.Column("created_by", sa.Text),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in LEDGER_KINDS) + ")",
                           name="credit_ledger_kind_check"),
    )
    op.create_index("credit_ledger_user_idx", "credit_ledger", ["user_id", "id"])
    op.create_index("credit_ledger_job_once_idx", "credit_ledger", ["job_id", "submission", "kind"], unique=True,
                    postgresql_where=sa.text("job_id IS NOT NULL"))
    op.create_table(
        "api_rate_limits",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("api_rate_limits")
    op.drop_table("credit_ledger")
    op.drop_table("refresh_tokens")
    op.drop_table("api_keys")
    op.drop_table("users")
