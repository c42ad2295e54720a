"""Partial indexes for the two counts of a submission; api_submit_job() stops counting at the cap

Revision ID: 0008
Revises: 0007

Written out in full (not derived from the code) so that later changes never rewrite history.

Every ``POST /api/v1/jobs`` counted, with the backlog of waiting jobs: (a) the caller's active jobs, to
compare with the cap, through ``jobs_user_created_idx`` and a visit of every one of their rows; and
(b) the new job's queue position, the waiting jobs with a smaller id, through ``jobs_status_idx`` and a
visit of every waiting row, or a scan of the whole table (benchmarks/api_benchmark.py: the submission
rate fell from run to run as the backlog grew).

- ``jobs_user_active_idx`` (user_id) WHERE status IN ('pending', 'queued', 'running'): the caller's
  active jobs, without the rows of their finished ones; and the cap check now stops at the cap
  (``count(*)`` over ``LIMIT p_max_active``): whether there are at least that many is all it decides.
  The refusal's message, which says how many there are, is the general path's, which still counts
  them all (only when it refuses).
- ``jobs_waiting_idx`` (id) WHERE status IN ('pending', 'queued'): the queue position, the same exact
  count as before (here and in JobPageReads.with_queue_position), read from this index alone where
  the visibility map says a heap page is all-visible, and never from the rows of finished jobs. It is
  still proportional to the number of jobs ahead: an exact count of them has no cheaper plan.

The function is replaced whole with the cap check changed and nothing else; the downgrade puts
0007's text back.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SUBMIT_FUNCTION = r"""
CREATE OR REPLACE FUNCTION api_submit_job(
    p_key_prefix text, p_key_hash text, p_token_user text,
    p_window bigint, p_rate_limit integer, p_cleanup_before bigint,
    p_max_active integer, p_price numeric,
    p_prompt text, p_negative_prompt text, p_model text, p_width text, p_height text,
    p_num_frames text, p_fps text, p_steps text, p_guidance_scale text, p_seed text,
    p_quality_preset text, p_priority integer, p_idempotency_key text, p_callback_url text)
RETURNS TABLE (user_id text, email text, role text, scopes text[], key_id bigint, job jobs,
               queue_position bigint)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_key api_keys%ROWTYPE;
    v_user users%ROWTYPE;
    v_scopes text[] := ARRAY['read', 'write'];
    v_count integer;
    v_job jobs%ROWTYPE;
BEGIN
    -- Who calls (ApiKeys.authenticate, Users.principal).
    IF p_key_prefix IS NOT NULL THEN
        SELECT * INTO v_key FROM api_keys k WHERE k.prefix = p_key_prefix;
        IF NOT FOUND OR v_key.key_hash <> p_key_hash OR v_key.revoked_at IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'api key';
        END IF;
        SELECT * INTO v_user FROM users u WHERE u.id = v_key.user_id AND u.deleted_at IS NULL;
        v_scopes := v_key.scopes;
    ELSE
        SELECT * INTO v_user FROM users u WHERE u.id = p_token_user AND u.deleted_at IS NULL;
    END IF;
    IF v_user.id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'account';
    END IF;
    IF v_key.id IS NOT NULL AND (v_key.last_used_at IS NULL OR v_key.last_used_at < now() - interval '1 minute') THEN
        UPDATE api_keys SET last_used_at = now() WHERE id = v_key.id;  -- to the minute, as ApiKeys does
    END IF;

    -- The request counted against the per-second limit (SharedRateLimiter.hit).
    INSERT INTO api_rate_limits AS r (user_id, window_start, count) VALUES (v_user.id, p_window, 1)
    ON CONFLICT ON CONSTRAINT api_rate_limits_pkey DO UPDATE SET count = r.count + 1
    RETURNING r.count INTO v_count;
    IF p_cleanup_before IS NOT NULL THEN
        DELETE FROM api_rate_limits WHERE window_start < p_cleanup_before;
    END IF;
    IF v_count > p_rate_limit THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'rate limit';
    END IF;

    -- May submit this (api.deps.require_write; a priority is the admin's; a callback needs a secret).
    IF v_user.role = 'support' OR NOT 'write' = ANY (v_scopes)
       OR (p_priority <> 0 AND v_user.role <> 'admin')
       OR (p_callback_url IS NOT NULL AND coalesce(v_user.webhook_secret, '') = '') THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'permission';
    END IF;

    -- The submission (JobSubmissions.submit with an account), under the user's submission lock.
    PERFORM pg_advisory_xact_lock(hashtext(v_user.id));
    PERFORM 1 FROM users u WHERE u.id = v_user.id AND u.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'erased';
    END IF;
    IF p_idempotency_key IS NOT NULL AND EXISTS (
            SELECT 1 FROM jobs j WHERE j.user_id = v_user.id AND j.idempotency_key = p_idempotency_key) THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'idempotency key';
    END IF;
    IF p_max_active IS NOT NULL AND (
            SELECT count(*) FROM (SELECT 1 FROM jobs j
                                  WHERE j.user_id = v_user.id AND j.status IN ('pending', 'queued', 'running')
                                  LIMIT p_max_active) active) >= p_max_active THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'active jobs';
    END IF;
    UPDATE users u SET credit_balance = u.credit_balance - p_price
    WHERE u.id = v_user.id AND u.deleted_at IS NULL AND u.credit_balance - p_price >= 0;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'credits';
    END IF;
    INSERT INTO jobs AS j (user_id, prompt, negative_prompt, priority, idempotency_key, callback_url, model, width,
                           height, num_frames, fps, steps, guidance_scale, seed, quality_preset)
    VALUES (v_user.id, p_prompt, p_negative_prompt, p_priority, p_idempotency_key, p_callback_url,
            p_model, p_width, p_height, p_num_frames, p_fps, p_steps, p_guidance_scale, p_seed, p_quality_preset)
    ON CONFLICT ON CONSTRAINT jobs_user_idempotency_key DO NOTHING
    RETURNING * INTO v_job;
    IF v_job.id IS NULL THEN  -- the same key inserted meanwhile without the lock (SQL, the CLI)
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'idempotency key';
    END IF;
    INSERT INTO credit_ledger (user_id, kind, amount, job_id, submission, note)
    VALUES (v_user.id, 'reserve', -p_price, v_job.id, 0, 'reserved at submission');

    -- JobPageReads.with_queue_position: the jobs waiting ahead of it (an index-only count over jobs_waiting_idx).
    RETURN QUERY SELECT v_user.id, v_user.email, v_user.role, v_scopes, v_key.id, v_job,
        (SELECT count(*) FROM jobs w WHERE w.status IN ('pending', 'queued') AND w.id < v_job.id);
END
$fn$
"""


def upgrade() -> None:
    op.execute("CREATE INDEX jobs_user_active_idx ON jobs (user_id) WHERE status IN ('pending', 'queued', 'running')")
    op.execute("CREATE INDEX jobs_waiting_idx ON jobs (id) WHERE status IN ('pending', 'queued')")
    op.execute(SUBMIT_FUNCTION)


def _revision_0007():
    path = Path(__file__).with_name("0007_api_submit_function.py")
    spec = importlib.util.spec_from_file_location("videogen_migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute("DROP FUNCTION api_submit_job")
    op.execute(_revision_0007().SUBMIT_FUNCTION)
    op.execute("DROP INDEX jobs_waiting_idx")
    op.execute("DROP INDEX jobs_user_active_idx")
