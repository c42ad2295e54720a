# Sourced by the scripts: the environment of the local (embedded defaults) setup.
# Starts the project-local PostgreSQL unless DATABASE_URL points elsewhere.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIDEOGEN_HOME=${VIDEOGEN_HOME:-$repo_root/.videogen}
export DAGSTER_HOME=${DAGSTER_HOME:-$repo_root/dagster_home}
if [ -z "${DATABASE_URL:-}" ]; then
  port=${VIDEOGEN_PG_PORT:-55432}
  DATABASE_URL=$("$repo_root/.venv/bin/python" -m videogen.devtools.local_postgres start \
      --datadir "$VIDEOGEN_HOME/pgdata" --port "$port")
  export DATABASE_URL
  export DAGSTER_PG_URL=${DAGSTER_PG_URL:-$("$repo_root/.venv/bin/python" -m videogen.devtools.local_postgres start \
      --datadir "$VIDEOGEN_HOME/pgdata" --port "$port" --database dagster)}
fi
# Dagster's storage lives in its own database on the same server unless told otherwise.
export DAGSTER_PG_URL=${DAGSTER_PG_URL:-${DATABASE_URL%/*}/dagster}
