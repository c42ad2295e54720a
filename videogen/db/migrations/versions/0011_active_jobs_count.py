"""Counts kept without dead rows: each account's active jobs (the cap), and the waiting jobs in fixed slots

Revision ID: 0011
Revises: 0010

Written out in full (not derived from the code) so that later changes never rewrite history.

0008 bounded the cap check by the cap: ``count(*)`` over ``LIMIT p_max_active`` of the caller's
pending, queued and running jobs. Its cost still grows with the cap: one index entry, and mostly a
heap visit (new rows are not all-visible yet), per active job up to the cap. With the cap set above
a large backlog (an account that may queue thousands of jobs, or benchmarks/api_benchmark.py, whose
cap is 100000), PostgreSQL's CPU per ``api_submit_job()`` grew from 0.52 ms with 10 active jobs per
user to 1.30 ms with 200 (the same calls without the check stayed at 0.52 ms).

- ``users.active_jobs``: the number of the account's jobs that are pending, queued or running, kept
  by row-level triggers on ``jobs`` whose WHEN clauses choose the only changes that move it: a job
  inserted or deleted in one of those statuses, an UPDATE that moves a job into or out of them, or
  one that gives an active job another ``user_id`` (an erasure's anonymization). The sensor's
  pending → queued and a claim's queued → running do not call the function at all. TRUNCATE sets
  every count to 0. The UPDATE of ``users`` runs in the writer's own transaction, so the count is
  exact in every snapshot, rolled back with its job; a job whose ``user_id`` has no account (SQL,
  the CLI) changes nothing.
- A new ``users`` row starts from the jobs that already carry its id (BEFORE INSERT).
- ``api_submit_job()``: the cap check, the check that the account was not erased meanwhile and the
  credit reservation are one UPDATE of the user's row (``active_jobs < p_max_active``); nothing else
  changes but two waits that could close a cycle with a batch of submissions (0012): the key's
  ``last_used_at`` and the deletion of old rate-limit windows skip rows another transaction holds.
  The general path (videogen.lifecycle.submission.check_active_jobs) reads the same column.

- The tally of waiting jobs (0009) becomes ``waiting_jobs_slots``: 128 rows updated in place, not rows
  inserted and folded. 0009's fold deleted its rows, and the sum read every page they had filled
  since the last vacuum: 362 pages, 0.33 ms per ``api_submit_job()``, after 8,000 submissions in a
  few seconds (autovacuum's naptime is a minute). A writer adds its change to a slot no other
  transaction holds (``FOR UPDATE SKIP LOCKED``, starting from its backend's own), so writers still
  never wait on one another; the updates are HOT on a table of a few pages with room left on each
  (fillfactor 20), so a reader sums a few pages however many writes went before. Only if all 128
  slots are held at once does a writer wait, for its backend's own.
- ``jobs_waiting_ahead()`` sums the slots, reads the two ends of the line as ordered scans that stop
  at the first row, and plans without sequential or bitmap scans or sorts (nor JIT, which the
  priced-out scans would otherwise call for). A table that grew fast (a burst of submissions) has
  statistics that still say it is small, and the planner then chose plans that read every waiting
  job: a bitmap scan for the count (0.8 ms with 8,000 of them), or one aggregate over the whole of
  ``jobs_waiting_idx`` for ``min(id)`` and ``max(id)`` (8 ms with 6,000), instead of the few index
  entries on the short side of the line. Which plan a session kept depended on when autovacuum
  last analyzed the table, so PostgreSQL's CPU per submission either stayed flat or grew with the
  backlog, from run to run of the same benchmark.
- ``jobs_user_active_idx`` is dropped: the cap no longer counts, and a new account's first count
  reads ``jobs_user_created_idx``. Every job insert and status change had one index less to update.

Lock order: a job's transition now also updates its owner's row (as a refund already did for failed
and canceled jobs); a submission updates that row first and inserts the job after, into a row no one
else holds, so the two never wait on each other in opposite orders.

Upgrading while the API serves: the upgrade locks ``jobs`` and ``users``, which requests in flight
lock in both orders; it waits at most 0.5 s for a lock (then ``videogen db upgrade`` tries again),
so that it, and not a request, gives way when they meet in a cycle.

An account created by SQL with an id that already has jobs, while one of those jobs is being
inserted, can miss that job in its count (neither trigger sees the other's uncommitted row);
accounts made by videogen have random ids. ``videogen db recount`` sets the counts from the rows.

Writers to ``jobs`` must run under READ COMMITTED (all of videogen's do): under REPEATABLE READ, a
slot updated by a transaction that committed after the writer's snapshot is a serialization failure.

The downgrade puts 0010's objects back (0009's tally, function and index), seeded from the counts.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ACTIVE_JOBS = r"""
ALTER TABLE users ADD COLUMN active_jobs integer NOT NULL DEFAULT 0;

CREATE FUNCTION count_active_jobs() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE users SET active_jobs = 0 WHERE active_jobs <> 0;
        RETURN NULL;
    END IF;
    -- The trigger's WHEN chose a change that moves a count: out of the old owner's, into the new one's.
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('pending', 'queued', 'running') THEN
        UPDATE users SET active_jobs = active_jobs - 1 WHERE id = OLD.user_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.status IN ('pending', 'queued', 'running') THEN
        UPDATE users SET active_jobs = active_jobs + 1 WHERE id = NEW.user_id;
    END IF;
    RETURN NULL;
END
$fn$;

-- The WHEN clauses are evaluated without calling the function: progress, heartbeats, stages and the
-- moves between pending, queued and running (several per run) cost nothing.
CREATE TRIGGER jobs_count_active_insert AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'queued', 'running'))
    EXECUTE FUNCTION count_active_jobs();
CREATE TRIGGER jobs_count_active_update AFTER UPDATE OF status, user_id ON jobs FOR EACH ROW
    WHEN ((OLD.status IN ('pending', 'queued', 'running')) IS DISTINCT FROM (NEW.status IN ('pending', 'queued', 'running'))
          OR (OLD.user_id IS DISTINCT FROM NEW.user_id
              AND (OLD.status IN ('pending', 'queued', 'running') OR NEW.status IN ('pending', 'queued', 'running'))))
    EXECUTE FUNCTION count_active_jobs();
CREATE TRIGGER jobs_count_active_delete AFTER DELETE ON jobs FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'queued', 'running'))
    EXECUTE FUNCTION count_active_jobs();
CREATE TRIGGER jobs_count_active_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION count_active_jobs();

CREATE FUNCTION start_active_jobs() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.active_jobs := (SELECT count(*) FROM jobs j  -- through jobs_user_created_idx
                        WHERE j.user_id = NEW.id AND j.status IN ('pending', 'queued', 'running'));
    RETURN NEW;
END
$fn$;

CREATE TRIGGER users_start_active_jobs BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION start_active_jobs();
"""

TALLY_SLOTS = r"""
CREATE TABLE waiting_jobs_slots (slot smallint PRIMARY KEY, waiting bigint NOT NULL) WITH (fillfactor = 20);
INSERT INTO waiting_jobs_slots (slot, waiting) SELECT s, 0 FROM generate_series(0, 127) s;
UPDATE waiting_jobs_slots SET waiting = (SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued'))
WHERE slot = 0;

DROP TRIGGER jobs_tally_waiting_insert ON jobs;
DROP TRIGGER jobs_tally_waiting_update ON jobs;
DROP TRIGGER jobs_tally_waiting_delete ON jobs;
DROP TRIGGER jobs_tally_waiting_truncate ON jobs;
DROP FUNCTION tally_waiting_jobs();
DROP TABLE waiting_jobs_tally;
DROP SEQUENCE waiting_jobs_tally_writes;

CREATE FUNCTION tally_waiting_jobs() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    v_change bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE waiting_jobs_slots SET waiting = 0 WHERE waiting <> 0;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO v_change FROM new_rows WHERE status IN ('pending', 'queued');
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*) INTO v_change FROM old_rows WHERE status IN ('pending', 'queued');
    ELSE  -- a row's UPDATE that moved it into or out of the line (the trigger's WHEN chose it)
        v_change := CASE WHEN NEW.status IN ('pending', 'queued') THEN 1 ELSE -1 END;
    END IF;
    IF v_change <> 0 THEN
        -- A slot no other transaction holds (this one's own locks are not skipped), from this
        -- backend's own on: writers never wait on one another.
        UPDATE waiting_jobs_slots SET waiting = waiting + v_change
        WHERE slot = (SELECT s.slot FROM waiting_jobs_slots s WHERE s.slot >= pg_backend_pid() % 128
                      ORDER BY s.slot LIMIT 1 FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN
            UPDATE waiting_jobs_slots SET waiting = waiting + v_change
            WHERE slot = (SELECT s.slot FROM waiting_jobs_slots s ORDER BY s.slot LIMIT 1 FOR UPDATE SKIP LOCKED);
        END IF;
        IF NOT FOUND THEN  -- all 128 held at once: wait for this backend's own
            UPDATE waiting_jobs_slots SET waiting = waiting + v_change WHERE slot = pg_backend_pid() % 128;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER jobs_tally_waiting_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();
CREATE TRIGGER jobs_tally_waiting_update AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN ((OLD.status IN ('pending', 'queued')) IS DISTINCT FROM (NEW.status IN ('pending', 'queued')))
    EXECUTE FUNCTION tally_waiting_jobs();
CREATE TRIGGER jobs_tally_waiting_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();
CREATE TRIGGER jobs_tally_waiting_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tally_waiting_jobs();

-- The counts read index ranges whatever the statistics say (see the module's text). No JIT: with
-- sequential scans priced out, the slots' scan costs more than jit_above_cost (50 ms to compile).
CREATE OR REPLACE FUNCTION jobs_waiting_ahead(p_id bigint) RETURNS bigint LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off AS $fn$
BEGIN
    RETURN (
        -- The two ends as ordered scans that stop at once; min() and max() were planned as one
        -- aggregate over every waiting job when the statistics said there were two of them.
        WITH line AS (SELECT (SELECT id FROM jobs WHERE status IN ('pending', 'queued') ORDER BY id LIMIT 1) AS first_id,
                             (SELECT id FROM jobs WHERE status IN ('pending', 'queued') ORDER BY id DESC LIMIT 1) AS last_id)
        SELECT CASE
            WHEN p_id - first_id <= last_id - p_id
                THEN (SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued') AND id < p_id)
            ELSE (SELECT sum(waiting) FROM waiting_jobs_slots)
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
        -- To the minute, as ApiKeys does; never waiting for the key's row (whoever holds it writes the
        -- same minute), so that a batch (0012), which takes its accounts' rows in its own order, never
        -- waits on a key in a cycle.
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

    -- May submit this (api.deps.require_write; a priority is the admin's; a callback needs a secret).
    IF v_user.role = 'support' OR NOT 'write' = ANY (v_scopes)
       OR (p_priority <> 0 AND v_user.role <> 'admin')
       OR (p_callback_url IS NOT NULL AND coalesce(v_user.webhook_secret, '') = '') THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'permission';
    END IF;

    -- The submission (JobSubmissions.submit with an account), under the user's submission lock.
    PERFORM pg_advisory_xact_lock(hashtext(v_user.id));
    IF p_idempotency_key IS NOT NULL AND EXISTS (
            SELECT 1 FROM jobs j WHERE j.user_id = v_user.id AND j.idempotency_key = p_idempotency_key) THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'idempotency key';
    END IF;
    -- Still an account (not erased since it was read), under the cap (its kept count of active jobs)
    -- and able to pay: one statement, on the row the reservation updates anyway.
    UPDATE users u SET credit_balance = u.credit_balance - p_price
    WHERE u.id = v_user.id AND u.deleted_at IS NULL AND u.credit_balance - p_price >= 0
      AND (p_max_active IS NULL OR u.active_jobs < p_max_active);
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'VGS01', MESSAGE = 'erased, active jobs or credits';
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
    # Requests in flight lock users and jobs in both orders (a submission: users, then jobs; a refund:
    # jobs, then users), so this upgrade can meet one of them in a cycle whichever order it takes.
    # It gives up after 0.5 s of waiting, before PostgreSQL's deadlock check (1 s) would abort the
    # request instead; videogen.db.migrate.upgrade then tries again.
    op.execute("SET LOCAL lock_timeout = '500ms'")
    # No job changes between the counts and the triggers: SHARE ROW EXCLUSIVE lets readers in, no writer.
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.execute(ACTIVE_JOBS)
    op.execute("UPDATE users u SET active_jobs = c.active FROM ("
               "SELECT user_id, count(*) AS active FROM jobs WHERE status IN ('pending', 'queued', 'running') "
               "GROUP BY user_id) c WHERE u.id = c.user_id")
    op.execute("DROP INDEX jobs_user_active_idx")
    op.execute(TALLY_SLOTS)
    op.execute(SUBMIT_FUNCTION)


def _revision_0009():
    path = Path(__file__).with_name("0009_waiting_jobs_tally.py")
    spec = importlib.util.spec_from_file_location("videogen_migration_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    before = _revision_0009()
    op.execute("SET LOCAL lock_timeout = '500ms'")  # as the upgrade
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    for operation in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER jobs_tally_waiting_{operation} ON jobs")
    op.execute("DROP FUNCTION tally_waiting_jobs()")
    op.execute("DROP FUNCTION jobs_waiting_ahead(bigint)")
    op.execute("DROP TABLE waiting_jobs_slots")
    op.execute(before.TALLY)
    op.execute("INSERT INTO waiting_jobs_tally (change) "
               "SELECT count(*) FROM jobs WHERE status IN ('pending', 'queued')")
    op.execute(before.SUBMIT_FUNCTION)
    op.execute("CREATE INDEX jobs_user_active_idx ON jobs (user_id) "
               "WHERE status IN ('pending', 'queued', 'running')")
    op.execute("DROP TRIGGER users_start_active_jobs ON users")
    op.execute("DROP FUNCTION start_active_jobs()")
    for operation in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER jobs_count_active_{operation} ON jobs")
    op.execute("DROP FUNCTION count_active_jobs()")
    op.execute("ALTER TABLE users DROP COLUMN active_jobs")
