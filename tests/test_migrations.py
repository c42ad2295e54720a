import pytest
import sqlalchemy as sa

from tests.conftest import create_database
from videogen.db.migrate import downgrade, upgrade


def test_migrations_create_tables_and_round_trip(admin_url):
    url = create_database(admin_url)
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"jobs", "job_events", "alembic_version"} <= tables
    downgrade(url, "base")
    assert not {"jobs", "job_events"} & set(sa.inspect(engine).get_table_names())
    upgrade(url)
    upgrade(url)  # idempotent: a second upgrade is a no-op
    assert {"jobs", "job_events"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_a_row_with_only_user_and_prompt_gets_defaults(engine):
    with engine.begin() as conn:
        row = conn.execute(
            sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'a red fox') RETURNING *")
        ).mappings().one()
    assert row["status"] == "pending"
    assert row["model"] == "tiny"
    assert row["quality_preset"] == "STANDARD"
    assert row["priority"] == 0
    assert row["created_at"].tzinfo is not None


# The SQLAlchemy metadata the code queries (videogen/db/schema.py, videogen/kpi/tables.py) and the
# Alembic migrations that build the deployed database must agree: Alembic's autogenerate compares
# them on a freshly migrated database (columns, types, nullability, server defaults, indexes,
# unique constraints, comments).
def metadata_diff(engine: sa.Engine, metadata: list[sa.MetaData]) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, metadata)


def code_metadata() -> list[sa.MetaData]:
    from videogen.db.schema import metadata as jobs_metadata
    from videogen.kpi.tables import metadata as kpi_metadata

    return [jobs_metadata, kpi_metadata]


def test_schema_metadata_matches_the_migrations(engine):
    diff = metadata_diff(engine, code_metadata())
    assert diff == [], "videogen/db/schema.py or videogen/kpi/tables.py differ from the migrations:\n" + "\n".join(
        map(repr, diff))


def test_the_comparison_catches_a_column_the_migrations_lack(engine):
    copies = []
    for original in code_metadata():
        copy = sa.MetaData()
        for table in original.tables.values():
            table.to_metadata(copy)
        copies.append(copy)
    assert metadata_diff(engine, copies) == []  # a faithful copy: no difference
    jobs = copies[0].tables["jobs"]
    jobs.append_column(sa.Column("retry_reason", sa.Text))
    jobs.c.priority.type = sa.BigInteger()
    diff = metadata_diff(engine, copies)
    added = [d for d in diff if isinstance(d, tuple) and d[0] == "add_column"]
    assert [(d[2], d[3].name) for d in added] == [("jobs", "retry_reason")]
    changed = [d[0] for d in diff if isinstance(d, list)]
    assert changed and changed[0][0] == "modify_type" and changed[0][2:4] == ("jobs", "priority")


def test_0008_bounds_the_cap_check_and_its_downgrade_puts_0007_back(admin_url):
    url = create_database(admin_url)
    engine = sa.create_engine(url)

    def state() -> tuple[bool, set[str]]:
        with engine.connect() as conn:
            text = conn.execute(sa.text("SELECT pg_get_functiondef('api_submit_job'::regproc)")).scalar_one()
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("jobs")}
        return "LIMIT p_max_active" in text, indexes & {"jobs_user_active_idx", "jobs_waiting_idx"}

    both = {"jobs_user_active_idx", "jobs_waiting_idx"}
    downgrade(url, "0010")  # 0011 reads a kept count instead
    assert state() == (True, both)
    downgrade(url, "0007")
    assert state() == (False, set())
    upgrade(url, "0010")
    assert state() == (True, both)
    engine.dispose()


def test_0009_starts_the_tally_from_the_jobs_already_waiting_and_its_downgrade_puts_0008_back(admin_url):
    url = create_database(admin_url, migrate=False)
    upgrade(url, "0008")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) SELECT 'ana', 'before 0009', s "
                             "FROM unnest(ARRAY['pending', 'queued', 'running', 'succeeded', 'pending']) s"))

    def state() -> tuple[str, int | None]:
        with engine.connect() as conn:
            text = conn.execute(sa.text("SELECT pg_get_functiondef('api_submit_job'::regproc)")).scalar_one()
            tables = set(sa.inspect(conn).get_table_names())
            tally = (conn.execute(sa.text("SELECT sum(change) FROM waiting_jobs_tally")).scalar_one()
                     if "waiting_jobs_tally" in tables else
                     conn.execute(sa.text("SELECT sum(waiting) FROM waiting_jobs_slots")).scalar_one()
                     if "waiting_jobs_slots" in tables else None)
        return ("jobs_waiting_ahead" if "jobs_waiting_ahead(v_job.id)" in text else "count"), tally

    assert state() == ("count", None)
    upgrade(url)
    assert state() == ("jobs_waiting_ahead", 3)
    downgrade(url, "0008")
    assert state() == ("count", None)
    upgrade(url)
    assert state() == ("jobs_waiting_ahead", 3)
    engine.dispose()


def test_0011_starts_each_accounts_count_from_its_active_jobs_and_its_downgrade_puts_0010_back(admin_url):
    url = create_database(admin_url, migrate=False)
    upgrade(url, "0010")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email) VALUES ('ana', 'ana@example.com'), "
                             "('bo', 'bo@example.com')"))
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt, status) SELECT u, 'before 0011', s FROM unnest("
                             "ARRAY['ana', 'ana', 'ana', 'ana', 'bo', 'cy'], "
                             "ARRAY['pending', 'queued', 'running', 'succeeded', 'failed', 'pending']) AS t(u, s)"))

    def state() -> tuple[str, dict[str, int] | None]:
        with engine.connect() as conn:
            text = conn.execute(sa.text("SELECT pg_get_functiondef('api_submit_job'::regproc)")).scalar_one()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("users")}
            counts = (dict(conn.execute(sa.text("SELECT id, active_jobs FROM users")).all())
                      if "active_jobs" in columns else None)
        return ("kept" if "u.active_jobs < p_max_active" in text else "counted"), counts

    assert state() == ("counted", None)
    upgrade(url)
    assert state() == ("kept", {"ana": 3, "bo": 0})
    downgrade(url, "0010")
    assert state() == ("counted", None)
    with engine.begin() as conn:  # no trigger is left behind
        conn.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'after the downgrade')"))
    upgrade(url)
    assert state() == ("kept", {"ana": 4, "bo": 0})
    engine.dispose()


def test_an_upgrade_gives_way_to_requests_holding_its_tables_and_tries_again(admin_url):
    """0011 locks jobs and users, which requests lock in both orders: it waits at most 0.5 s for a lock,
    so that it, not a request, gives way; videogen.db.migrate.upgrade then tries again."""
    import logging
    import threading

    from tests.waiting import wait_until

    url = create_database(admin_url, migrate=False)
    upgrade(url, "0010")
    engine = sa.create_engine(url)
    gave_way: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            gave_way.append(record.getMessage())

    watch = Watch()
    logging.getLogger("videogen.db.migrate").addHandler(watch)
    request = engine.connect()
    try:
        request.begin()
        request.execute(sa.text("INSERT INTO jobs (user_id, prompt) VALUES ('ana', 'in flight')"))  # holds jobs
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            upgrade(url, attempts=1)
        errors: list[BaseException] = []

        def upgrade_in_background() -> None:
            try:
                upgrade(url)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=upgrade_in_background)
        thread.start()
        wait_until(lambda: gave_way, 30, "the upgrade to give way once")
        request.commit()
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors, errors
    finally:
        request.close()
        logging.getLogger("videogen.db.migrate").removeHandler(watch)
    assert "55P03" in gave_way[0]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT active_jobs FROM users")).all() == []  # at head: the column exists
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 1
    engine.dispose()
