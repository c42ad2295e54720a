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

Subtransactions: one per element; the caller keeps batches under 64 elements, the subtransactions a
backend can list in shared memory before every snapshot in the cluster gets slower.
"""

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


def upgrade() -> None:
    op.execute(BATCH_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION api_submit_jobs")
