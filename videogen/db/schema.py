"""SQLAlchemy Core description of the tables that migrations create.

Request parameters (model, width, height, num_frames, fps, steps, guidance_scale, seed,
quality_preset) are stored as ``text`` exactly as submitted: anyone may insert rows, and a value of
the wrong type must become a ``rejected`` job with a clear message rather than an INSERT that
PostgreSQL refuses (a lost request). Validation parses them and writes the normalized values back,
so after validation the columns hold what was actually generated. Everything the platform itself
writes (status, timestamps, outputs, metering) is strongly typed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

STATUSES = ("pending", "queued", "running", "succeeded", "failed", "rejected", "canceled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "rejected", "canceled"})
ACTIVE_STATUSES = frozenset({"queued", "running"})
# What the active-jobs cap counts, and the jobs that have a queue position (the partial indexes of
# migration 0008 are defined over exactly these).
CAPPED_STATUSES = ("pending", "queued", "running")
WAITING_STATUSES = ("pending", "queued")

REQUEST_PARAMETERS = (
    "model",
    "width",
    "height",
    "num_frames",
    "fps",
    "steps",
    "guidance_scale",
    "seed",
    "quality_preset",
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("negative_prompt", sa.Text, nullable=False, server_default=""),
    # Request parameters, as submitted (text; NULL = the model's default).
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
    # Lifecycle
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("stage", sa.Text),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("queued_at", sa.DateTime(timezone=True)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # Incremented by `videogen retry`: the sensor's run key is "<id>" then "<id>-r<submission>".
    sa.Column("submission", sa.Integer, nullable=False, server_default="0"),
    # A resubmitted job (worker died) waits until then: the retry backoff between runs.
    sa.Column("not_before", sa.DateTime(timezone=True)),
    # Written every few seconds by the process working on the job; a stale heartbeat on a running
    # job means its worker died without reporting (the local run launcher cannot tell us).
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    # "<host>:<pid>" of the process working on the job (what to look at, or kill, when it hangs).
    sa.Column("worker", sa.Text),
    sa.Column("run_id", sa.Text),
    # Outputs and metering
    sa.Column("output_uri", sa.Text),
    sa.Column("thumbnail_uri", sa.Text),
    sa.Column("output_size_bytes", sa.BigInteger),
    sa.Column("output_sha256", sa.Text),
    sa.Column("gpu_seconds", sa.Float),
    sa.Column("credits", sa.Numeric(18, 4)),
    sa.Column("error_code", sa.Text),
    sa.Column("error_message", sa.Text),
    # Where the final status is POSTed (migration 0004; API submissions).
    sa.Column("callback_url", sa.Text),
    # A film's storyboard (JSON), a spoken prompt's object key and its transcript (migration 0006).
    sa.Column("storyboard", postgresql.JSONB),
    sa.Column("audio_prompt_key", sa.Text),
    sa.Column("transcript", sa.Text),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="jobs_status_check"
    ),
    sa.UniqueConstraint("user_id", "idempotency_key", name="jobs_user_idempotency_key"),
)

sa.Index("jobs_pending_idx", jobs.c.id, postgresql_where=jobs.c.status == "pending")
sa.Index("jobs_status_idx", jobs.c.status)
sa.Index("jobs_created_at_idx", jobs.c.created_at)
sa.Index("jobs_user_created_idx", jobs.c.user_id, jobs.c.created_at)
# Migration 0008: the queue position's index (jobs in WAITING_STATUSES with a smaller id). Its other
# index, of a user's jobs in CAPPED_STATUSES, went with migration 0011 (users.active_jobs is the count).
sa.Index("jobs_waiting_idx", jobs.c.id, postgresql_where=jobs.c.status.in_(WAITING_STATUSES))

# Migrations 0009 and 0011: the number of jobs in WAITING_STATUSES, kept by triggers on jobs in 128
# slots updated in place (fillfactor 20: room for HOT updates on every page) (a writer takes one that no other transaction holds, so writers never wait
# on one another), and jobs_waiting_ahead(id), the queue position read from the shorter side of the
# line. Triggers and functions are outside this metadata; tests/test_submission_counts.py checks the
# slots against a count after every kind of change.
waiting_jobs_slots = sa.Table(
    "waiting_jobs_slots",
    metadata,
    sa.Column("slot", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("waiting", sa.BigInteger, nullable=False),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("stage", sa.Text),
    sa.Column("message", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)

sa.Index("job_events_job_id_idx", job_events.c.job_id, job_events.c.id)

# ── accounts (migration 0003): who may use the API, and what they may spend ────────────────────────
ROLES = ("user", "support", "admin")
LEDGER_KINDS = ("grant", "reserve", "refund", "adjust")

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text),
    sa.Column("role", sa.Text, nullable=False, server_default="user"),
    sa.Column("credit_balance", sa.Numeric(18, 4), nullable=False, server_default="0"),
    sa.Column("webhook_secret", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    # Pending, queued and running jobs of the account: kept by triggers on jobs (migration 0011), read
    # by the active-jobs cap.
    sa.Column("active_jobs", sa.Integer, nullable=False, server_default="0"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False, unique=True),
    sa.Column("key_hash", sa.Text, nullable=False),
    sa.Column("scopes", sa.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("family", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

credit_ledger = sa.Table(
    "credit_ledger",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", sa.Numeric(18, 4), nullable=False),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="SET NULL")),
    sa.Column("submission", sa.Integer),
    sa.Column("note", sa.Text),
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)

api_rate_limits = sa.Table(
    "api_rate_limits",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("window_start", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# Migrations 0007 and 0010 add two functions, api_submit_job() and api_read_job(): an API submission
# and a read of one job with nothing to refuse, each in one statement (videogen.lifecycle.one_trip).
# Functions are outside this metadata and its comparison with the migrations;
# tests/test_one_trip_submission.py runs them against the general path instead.

sa.Index("users_email_idx", sa.func.lower(users.c.email), unique=True)
sa.Index("api_keys_user_idx", api_keys.c.user_id)
sa.Index("refresh_tokens_family_idx", refresh_tokens.c.family)
sa.Index("credit_ledger_user_idx", credit_ledger.c.user_id, credit_ledger.c.id)
# At most one reservation and one refund per job submission: what makes refunds exactly-once.
sa.Index("credit_ledger_job_once_idx", credit_ledger.c.job_id, credit_ledger.c.submission, credit_ledger.c.kind,
         unique=True, postgresql_where=credit_ledger.c.job_id.isnot(None))

# ── webhooks and erasures (migration 0004) ─────────────────────────────────────────────────────────
DELIVERY_STATES = ("pending", "delivered", "failed")

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
)
sa.Index("webhook_deliveries_due_idx", webhook_deliveries.c.next_attempt_at,
         postgresql_where=webhook_deliveries.c.state == "pending")
sa.Index("webhook_deliveries_job_idx", webhook_deliveries.c.job_id)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("delivery_id", sa.BigInteger, sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)
sa.Index("webhook_attempts_delivery_idx", webhook_attempts.c.delivery_id, webhook_attempts.c.id)

account_erasures = sa.Table(
    "account_erasures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("anonymized_user_id", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("jobs_anonymized", sa.Integer, nullable=False),
    sa.Column("objects_deleted", sa.Integer, nullable=False),
    sa.Column("keys_revoked", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)
