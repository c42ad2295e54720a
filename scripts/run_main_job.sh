#!/usr/bin/env bash
# The main job, end to end on the embedded defaults: install what is missing, start the
# project-local PostgreSQL (unless DATABASE_URL points elsewhere), migrate, submit sample prompts,
# let the real sensor and run launcher process them, print status/output/ffprobe facts per job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
source scripts/env.sh
.venv/bin/videogen db upgrade
exec .venv/bin/python -m videogen.devtools.demo "$@"
