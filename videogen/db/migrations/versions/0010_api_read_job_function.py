"""api_read_job(): GET /api/v1/jobs/{id} that has nothing to refuse, in one statement

Revision ID: 0010
Revises: 0009

Written out in full (not derived from the code) so that later changes never rewrite history.

The API read a job in two transactions on two pooled connections, from a worker thread: the key's
account (or the access token's) and the per-user rate-limit count, then the job and its queue
position. With 20 clients reading, that cost about 4.5 ms of the API's CPU and 3 ms of PostgreSQL's
per request (benchmarks/api_benchmark.py). This function does the same steps, in the same order, in
one round trip, for the request that passes them all: the key's account (or the access token's), the
key's last use (to the minute), the rate-limit count, the job, that the caller may see it (its
owner, or a role that reads everything), and its queue position (``jobs_waiting_ahead()``, 0009) when
it is waiting. As on the general path, any key may read (reads need no scope).

Whenever any step would refuse (a bad key, the limit, a job that does not exist or is not theirs),
it raises SQLSTATE ``VGS01``: the statement rolls back as a whole (the rate-limit count too) and the
caller takes the general path (``api.deps.caller`` and ``JobPageReads.with_queue_position``), which
answers with its own status and message, so the rules keep one statement of their messages, in Python.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

READ_FUNCTION = r"""
CREATE FUNCTION api_read_job(
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
    op.execute(READ_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION api_read_job")
