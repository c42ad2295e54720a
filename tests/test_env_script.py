"""`source scripts/env.sh`: the DATABASE_URL it exports works in psql and in the code, as is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from tests.conftest import free_port
from videogen.devtools.local_postgres import _bindir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_script_home():
    """A VIDEOGEN_HOME of its own (not under pytest's basetemp, as in conftest); its server is stopped after."""
    home = Path(tempfile.mkdtemp(prefix="videogen-env-sh-"))
    try:
        yield home
    finally:
        if (home / "pgdata" / "postmaster.pid").exists():  # pg_ctl stop, by data directory (not by name), and
            # PgBouncer by its pidfile
            subprocess.run([sys.executable, "-m", "videogen.devtools.local_postgres", "stop",
                            "--datadir", str(home / "pgdata")], cwd=REPO, check=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def test_sourced_env_gives_a_libpq_database_url_that_psql_and_the_code_accept(env_script_home):
    psql = shutil.which("psql") or str(_bindir() / "psql")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME")}
    env.update(VIDEOGEN_HOME=str(env_script_home), VIDEOGEN_PG_PORT=str(free_port()), PSQL=psql)
    script = """
        set -euo pipefail
        source scripts/env.sh
        echo "DATABASE_URL=$DATABASE_URL"
        echo "DAGSTER_PG_URL=$DAGSTER_PG_URL"
        "$PSQL" "$DATABASE_URL" -Atc 'select 1'
        .venv/bin/python -m videogen.cli db upgrade --json
    """
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    database_url = lines[0].removeprefix("DATABASE_URL=")
    dagster_url = lines[1].removeprefix("DAGSTER_PG_URL=")
    port = env["VIDEOGEN_PG_PORT"]
    assert database_url == f"postgresql://videogen:videogen@127.0.0.1:{port}/videogen"  # libpq: no +driver
    assert lines[2] == "1"  # psql took it as is
    assert lines[3] == '{"upgraded_to": "head"}'  # so did `videogen db upgrade` (through Settings)

    # The same URL through the code's other doors: SQLAlchemy via normalize_database_url, the Dagster
    # resource, Alembic, and the KPI assets' JDBC conversion.
    from resources.database import PostgresResource
    from videogen.config import normalize_database_url
    from videogen.db.migrate import upgrade
    from videogen.kpi.config import JdbcSource

    engine = sa.create_engine(normalize_database_url(database_url))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from jobs")).scalar_one() == 0
    engine.dispose()
    with PostgresResource(database_url=database_url).get_engine().connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar_one() == "videogen"
    upgrade(database_url)  # already at head: a no-op, but through Alembic with the libpq URL
    jdbc = JdbcSource.from_sqlalchemy_url(database_url)
    assert jdbc.url == f"jdbc:postgresql://127.0.0.1:{port}/videogen"
    assert (jdbc.properties["user"], jdbc.properties["password"]) == ("videogen", "videogen")

    # Dagster's storage URL keeps SQLAlchemy's psycopg2 form: dagster-postgres passes it to
    # create_engine as is, and SQLAlchemy 2.1 would read a bare postgresql:// as psycopg 3.
    from dagster_postgres.utils import create_pg_engine

    # Through PgBouncer's Unix socket next to the project-local server (Dagster connects afresh for
    # every query): consecutive connections are served by the same PostgreSQL backend, and session
    # state set on one does not leak into the next (DISCARD ALL).
    socket_dir = quote(str(env_script_home / "pgdata-pgbouncer"), safe="")
    assert dagster_url == f"postgresql+psycopg2://videogen@/dagster?host={socket_dir}&port={port}"
    dagster_engine = create_pg_engine(dagster_url)  # NullPool, as Dagster's storage makes it
    backends, timeouts = set(), []
    for _ in range(3):
        with dagster_engine.connect() as conn:
            assert conn.execute(sa.text("select current_database()")).scalar_one() == "dagster"
            backends.add(conn.execute(sa.text("select pg_backend_pid()")).scalar_one())
            timeouts.append(conn.execute(sa.text("show statement_timeout")).scalar_one())
            conn.execute(sa.text("set statement_timeout = 12345"))
    dagster_engine.dispose()
    assert len(backends) == 1 and timeouts == ["0", "0", "0"], (backends, timeouts)


def test_dagster_url_from_a_given_libpq_database_url_keeps_its_options(tmp_path):
    """With DATABASE_URL set (no local server), Dagster's URL is derived on the same server, query kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_PG_URL",)}
    env.update(VIDEOGEN_HOME=str(tmp_path),
               DATABASE_URL="postgresql://ana:s3cret@db.internal:6432/videogen?sslmode=require")
    result = subprocess.run(["bash", "-c", 'source scripts/env.sh && echo "$DATABASE_URL" && echo "$DAGSTER_PG_URL"'],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "postgresql://ana:s3cret@db.internal:6432/videogen?sslmode=require",
        "postgresql+psycopg2://ana:s3cret@db.internal:6432/dagster?sslmode=require",
    ]


def test_a_port_taken_by_another_program_is_named_with_the_fix(env_script_home):
    """Another checkout's local PostgreSQL on the same port used to answer for ours (pg_isready on the
    TCP port), and the next psql on our own socket then failed with a bare exit status."""
    import socket

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.update(VIDEOGEN_HOME=str(env_script_home), VIDEOGEN_PG_PORT=str(port))
        result = subprocess.run(["bash", "-c", "set -euo pipefail; source scripts/env.sh; echo started"], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "started" not in result.stdout
    assert f"error: port {port} on 127.0.0.1 is in use by another program" in result.stderr
    assert "VIDEOGEN_PG_PORT" in result.stderr and "Traceback" not in result.stderr


def test_a_stale_pgbouncer_pidfile_naming_another_process_is_not_trusted(env_script_home):
    """After a crash or a reboot the pidfile may name a pid another program has since been given:
    PgBouncer is then started (not taken as running), and stop never signals that program."""
    from sqlalchemy.pool import NullPool

    from videogen.devtools.local_postgres import LocalPostgres, bouncer_for

    server = LocalPostgres(env_script_home / "pgdata", free_port())
    server.start()
    bouncer = bouncer_for(server)
    bouncer.rundir.mkdir(parents=True)
    bouncer.pidfile.write_text(f"{os.getpid()}\n")  # this test's own process, as a reused pid would be
    assert bouncer.pid() is None and not bouncer.is_running()
    bouncer.stop()  # a SIGTERM to the pid in the file would end this test here
    bouncer.start()
    assert bouncer.is_running() and bouncer.pid() not in (None, os.getpid())
    engine = sa.create_engine(bouncer.socket_url("videogen"), poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar_one() == "videogen"
    engine.dispose()
    bouncer.stop()
    assert bouncer.pid() is None
