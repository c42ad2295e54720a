"""The number of waiting jobs kept as a tally; the queue position counts the shorter side of the line

Revision ID: 0009
Revises: 0008

Written out in full (not derived from the code) so that later changes never rewrite history.

A queue position is the number of waiting jobs (pending or queued) with a smaller id. 0008 counted
them through ``jobs_waiting_idx``, which still costs one index entry, and mostly a heap visit (new rows
are not all-visible yet), per job ahead: with 10,000 jobs waiting it was 78 % of PostgreSQL's time in
``api_submit_job()`` (pg_stat_statements, track = all), whose job is always the last in the line.

- ``waiting_jobs_tally``: rows of changes whose sum is the number of waiting jobs. Statement-level
  triggers on ``jobs`` (INSERT and DELETE, with transition tables) add one row per statement that
  changes the number; a row-level trigger adds ±1 for an UPDATE that moves a job into or out of the
  line (its WHEN clause skips every other update, such as progress and heartbeats); TRUNCATE empties
  it. Rows are only inserted, never updated, so writers never
  wait on one another (one counter row would serialize every submission on its lock). Every 64th
  write (a sequence counts them, outside transactions) folds the rows into one: a DELETE … RETURNING
  and the INSERT of their sum, in the writer's own transaction, under a try-lock so that two folds
  never overlap, and only under READ COMMITTED (an older snapshot could not delete a concurrent
  fold's rows). A reader's statement sees the tally and the rows of ``jobs`` in one snapshot, so the
  sum is exact, not an estimate.
- ``jobs_waiting_ahead(id)``: the exact count, read from whichever side of the job is shorter in ids
  (the smallest and largest waiting ids are two index lookups): the jobs ahead, counted; or the tally
  minus the jobs from this one on, counted. A new job's answer costs the few jobs submitted after it.
  Ids are a proxy for the number of jobs: an old job that stays waiting (a retry's backoff) makes the
  front of the line look long, and a read of a job near the front then counts the jobs behind it,
  which costs what 0008's count cost at most.
- ``api_submit_job()`` answers its queue position with it; nothing else in the function changes.

The downgrade puts 0008's function back and drops the rest.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TALLY = r"""
-- A key of its own: the fold's DELETE needs one under logical replication (a publication of all tables).
CREATE TABLE waiting_jobs_tally (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, change bigint NOT NULL);
CREATE SEQUENCE waiting_jobs_tally_writes;

CREATE FUNCTION tally_waiting_jobs() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    v_change bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM waiting_jobs_tally;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO v_change FROM new_rows WHERE status IN ('pending', 'queued');
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*) INTO v_change FROM old_rows WHERE status IN ('pending', 'queued');
    ELSE  -- a row's UPDATE that moved it into or out of the line (the trigger's WHEN chose it)
        v_change := CASE WHEN NEW.status IN ('pending', 'queued') THEN 1 ELSE -1 END;
    END IF;
    IF v_change <> 0 THEN
        INSERT INTO waiting_jobs_tally (change) VALUES (v_change);
        -- Now and then, fold the rows into one: readers sum a few rows, not one per statement ever.
        -- Only under READ COMMITTED: a snapshot older than another fold's commit cannot delete its rows.
        IF nextval('waiting_jobs_tally_writes') % 64 = 0
           AND current_setting('transaction_isolation') = 'read committed'
           AND pg_try_advisory_xact_lock(hashtext('waiting_jobs_tally'), 0) THEN
            WITH folded AS (DELETE FROM waiting_jobs_tally RETURNING change)
            INSERT INTO waiting_jobs_tally (change) SELECT sum(change) FROM folded HAVING count(*) > 0;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER jobs_tally_waiting_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();
-- Per row, and only for a status change into or out of the line: the WHEN is evaluated without
-- calling the function, so progress, heartbeat and stage updates (many per run) cost nothing.
CREATE TRIGGER jobs_tally_waiting_update AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN ((OLD.status IN ('pending', 'queued')) IS DISTINCT FROM (NEW.status IN ('pending', 'queued')))
    EXECUTE FUNCTION tally_waiting_jobs();
CREATE TRIGGER jobs_tally_waiting_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();
CREATE TRIGGER jobs_tally_waiting_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();

-- PL/pgSQL, not SQL: its statement's plan is kept for the session (a SQL function's is made per call).
-- STABLE: the statement reads with the caller's snapshot.
CREATE FUNCTION jobs_waiting_ahead(p_id bigint) RETURNS bigint LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    RETURN (
        WITH line AS (SELECT min(id) AS first_id, max(id) AS last_id FROM jobs WHERE status IN ('pending', 'queued'))
        SELECT CASE
            WHEN p_id - first_id <= last_id - p_id
                THEN (SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') AND id < p_id)
            ELSE (SELECT coalesce(sum(change), 0) FROM waiting_jobs_tally)
                 - (SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') AND id >= p_id)
        END
        FROM line);
END
$fn$;
"""

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

    -- JobPageReads.with_queue_position: the jobs waiting ahead of it. The newest job: the tally minus
    -- the few waiting jobs from it on, not a count of the whole line.
    RETURN QUERY SELECT v_user.id, v_user.email, v_user.role, v_scopes, v_key.id, v_job,
        jobs_waiting_ahead(v_job.id);
END
$fn$
"""


def upgrade() -> None:
    # No job changes between the count and the triggers: SHARE ROW EXCLUSIVE lets readers in, no writer.
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.execute(TALLY)
    op.execute("INSERT INTO waiting_jobs_tally (change) "
               "SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued')")
    op.execute(SUBMIT_FUNCTION)


def _revision_0008():
    path = Path(__file__).with_name("0008_submission_count_indexes.py")
    spec = importlib.util.spec_from_file_location("videogen_migration_0008", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute(_revision_0008().SUBMIT_FUNCTION)
    op.execute("DROP FUNCTION jobs_waiting_ahead(bigint)")
    for operation in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER jobs_tally_waiting_{operation} ON jobs")
    op.execute("DROP FUNCTION tally_waiting_jobs()")
    op.execute("DROP TABLE waiting_jobs_tally")
    op.execute("DROP SEQUENCE waiting_jobs_tally_writes")
