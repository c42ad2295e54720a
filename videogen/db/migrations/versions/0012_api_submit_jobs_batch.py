"""api_submit_jobs(): submissions that arrive together, in one statement and one transaction

Revision ID: 0012
Revises: 0011

Written out in full (not derived from the code) so that later changes never rewrite history.

Each ``POST /api/v1/jobs`` with nothing to refuse was one call of ``api_submit_job()`` (0007): one
round trip, one transaction and one commit each. Per submission, PostgreSQL spent 0.56 ms of CPU that
way, and 0.31 ms when the same calls came five to a statement (20 callers, 2 cores; the work of a
transaction, its snapshot and commit, the function call and the protocol, paid once for five).
videogen.lifecycle.one_trip now sends the submissions that wait for a connection together.

``api_submit_jobs()`` takes arrays (one element per submission, in the order of the arguments of
``api_submit_job()``) and the values the submissions share (the rate-limit window, the limits), and
calls ``api_submit_job()`` for each element, each in a subtransaction of its own: an element that
``api_submit_job()`` refuses (SQLSTATE VGS01) is rolled back alone, leaves no trace, and returns no
row (the API's route then answers it); the others return their row with ``ord``, the element's
1-based index.

Lock order: the elements run in the order of their account's ``hashtext(id)`` (the key of the
submission lock; then the id; then their order in the arrays), whatever order they came in, so two
batches that share accounts take the accounts' locks (rate-limit row, submission lock, the users
row) in the same order and never wait on each other in a cycle. Any other transaction that submits
holds one account's locks only.

``api_read_job()`` (0010) changes as ``api_submit_job()`` did in 0011: a key's ``last_used_at`` and the
deletion of old rate-limit windows skip rows another transaction holds, instead of waiting for them.
A batch holds several accounts' rows at once; a read or a submission that waited for a key row or an
old window while holding its own account's rate-limit row could close a cycle with it.

Subtransactions: one per element; the caller keeps batches under 64 elements, the subtransactions a
backend can list in shared memory before every snapshot in the cluster gets slower.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BATCH_FUNCTION = r"""
CREATE FUNCTION api_submit_jobs(
    p_key_prefix text[], p_key_hash text[], p_token_user text[],
    p_window bigint, p_rate_limit integer, p_cleanup_before bigint, p_max_active integer,
    p_price numeric[], p_prompt text[], p_negative_prompt text[], p_model text[], p_width text[],
    p_height text[], p_num_frames text[], p_fps text[], p_steps text[], p_guidance_scale text[],
    p_seed text[], p_quality_preset text[], p_priority integer[], p_idempotency_key text[],
    p_callback_url text[])
RETURNS TABLE (ord integer, user_id text, email text, role text, scopes text[], key_id bigint, job jobs,
               queue_position bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_i bigint;
BEGIN
    FOR v_i IN
        SELECT e.i
        FROM unnest(p_key_prefix, p_token_user) WITH ORDINALITY AS e(prefix, token_user, i)
        LEFT JOIN api_keys k ON k.prefix = e.prefix
        ORDER BY hashtext(coalesce(k.user_id, e.token_user)), coalesce(k.user_id, e.token_user), e.i
    LOOP
        BEGIN
            RETURN QUERY SELECT v_i::integer, s.* FROM api_submit_job(
                p_key_prefix => p_key_prefix[v_i], p_key_hash => p_key_hash[v_i], p_token_user => p_token_user[v_i],
                p_window => p_window, p_rate_limit => p_rate_limit,
                -- Old windows are deleted once per batch, by its first element.
                p_cleanup_before => CASE WHEN v_i = 1 THEN p_cleanup_before END,
                p_max_active => p_max_active, p_price => p_price[v_i], p_prompt => p_prompt[v_i],
                p_negative_prompt => p_negative_prompt[v_i], p_model => p_model[v_i], p_width => p_width[v_i],
                p_height => p_height[v_i], p_num_frames => p_num_frames[v_i], p_fps => p_fps[v_i],
                p_steps => p_steps[v_i], p_guidance_scale => p_guidance_scale[v_i], p_seed => p_seed[v_i],
                p_quality_preset => p_quality_preset[v_i], p_priority => p_priority[v_i],
                p_idempotency_key => p_idempotency_key[v_i], p_callback_url => p_callback_url[v_i]) s;
        EXCEPTION WHEN SQLSTATE 'VGS01' THEN
            NULL;  -- refused: rolled back alone, no row; the API's route answers this submission
        END;
    END LOOP;
END
$fn$
"""

READ_FUNCTION = r"""
CREATE OR REPLACE FUNCTION api_read_job(
    p_key_prefix text, p_key_hash text, p_token_user text,
    p_window bigint, p_rate_limit integer, p_cleanup_before bigint, p_job_id bigint)
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
        -- To the minute, as ApiKeys does, never waiting for the key's row (as api_submit_job(), 0011).
        UPDATE api_keys SET last_used_at = now()
        WHERE id = (SELECT k2.id FROM api_keys k2 WHERE k2.id = v_key.id FOR UPDATE SKIP LOCKED);
    END IF;

    -- The request counted against the per-second limit (SharedRateLimiter.hit).
    INSERT INTO api_rate_limits AS r (user_id, window_start, count) VALUES (v_user.id, p_window, 1)
    ON CONFLICT ON CONSTRAINT api_rate_limits_pkey DO UPDATE SET count = r.count + 1
    RETURNING r.count INTO v_count;
    IF p_cleanup_before IS NOT NULL THEN  -- old windows, skipping rows another cleanup is deleting
        DELETE FROM api_rate_limits WHERE ctid = ANY (ARRAY(
            SELECT r2.ctid FROM api_rate_limits r2 WHERE r2.window_start < p_cleanup_before FOR UPDATE SKIP LOCKED));
    END IF;
    IF v_count > p_rate_limit THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'rate limit';
    END IF;

    -- The job, if the caller may see it (api.routes.jobs.get_job: its owner, or admin and support).
    SELECT * INTO v_job FROM jobs j WHERE j.id = p_job_id;
    IF NOT FOUND OR (v_user.role NOT IN ('admin', 'support') AND v_job.user_id IS DISTINCT FROM v_user.id) THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'job';
    END IF;

    -- JobPageReads.with_queue_position: the jobs waiting ahead of it, when it is waiting.
    RETURN QUERY SELECT v_user.id, v_user.email, v_user.role, v_scopes, v_key.id, v_job,
        CASE WHEN v_job.status IN ('pending', 'queued') THEN jobs_waiting_ahead(v_job.id) END;
END
$fn$
"""


def upgrade() -> None:
    op.execute(BATCH_FUNCTION)
    op.execute(READ_FUNCTION)


def _revision_0010():
    path = Path(__file__).with_name("0010_api_read_job_function.py")
    spec = importlib.util.spec_from_file_location("videogen_migration_0010", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute("DROP FUNCTION api_submit_jobs")
    op.execute("DROP FUNCTION api_read_job")
    op.execute(_revision_0010().READ_FUNCTION)
