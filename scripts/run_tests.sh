#!/usr/bin/env bash
# The test suite: install what is missing, then pytest (the tests start PostgreSQL, moto, Spark… themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
