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
