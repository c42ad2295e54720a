# Sourced by the scripts: the environment of the local (embedded defaults) setup.
# Starts the project-local PostgreSQL unless DATABASE_URL points elsewhere.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIDEOGEN_HOME=${VIDEOGEN_HOME:-$repo_root/.videogen}
export DAGSTER_HOME=${DAGSTER_HOME:-$repo_root/dagster_home}
# DATABASE_URL is a libpq URL (postgresql://…): `psql "$DATABASE_URL"` takes it, and the code gives
# SQLAlchemy its psycopg2 driver itself (videogen.config.normalize_database_url).
if [ -z "${DATABASE_URL:-}" ]; then
  port=${VIDEOGEN_PG_PORT:-55432}
  DATABASE_URL=$("$repo_root/.venv/bin/python" -m videogen.devtools.local_postgres start \
      --datadir "$VIDEOGEN_HOME/pgdata" --port "$port")
  export DATABASE_URL
  # Dagster's storage through PgBouncer's Unix socket: Dagster connects afresh for every query (~160
  # per run); PgBouncer reuses server connections, so PostgreSQL does not fork a backend for each
  # (local_postgres.LocalPgBouncer), and a socket skips TCP and the password exchange.
  export DAGSTER_PG_URL=${DAGSTER_PG_URL:-$("$repo_root/.venv/bin/python" -m videogen.devtools.local_postgres start \
      --datadir "$VIDEOGEN_HOME/pgdata" --port "$port" --database dagster --pooled)}
fi
# Dagster's storage lives in its own database on the same server unless told otherwise.
if [ -z "${DAGSTER_PG_URL:-}" ]; then
  _vg_base=${DATABASE_URL%%\?*}
  DAGSTER_PG_URL=${_vg_base%/*}/dagster${DATABASE_URL#"$_vg_base"}  # keeps ?sslmode=… and the like
  unset _vg_base
fi
# dagster-postgres hands DAGSTER_PG_URL to SQLAlchemy as is, and SQLAlchemy 2.1 reads a bare
# postgresql:// as psycopg 3 (not installed): name the psycopg2 driver.
case $DAGSTER_PG_URL in
  postgresql://*) DAGSTER_PG_URL=postgresql+psycopg2://${DAGSTER_PG_URL#postgresql://} ;;
  postgres://*) DAGSTER_PG_URL=postgresql+psycopg2://${DAGSTER_PG_URL#postgres://} ;;
esac
export DAGSTER_PG_URL
