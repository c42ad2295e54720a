#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine; safe to run again (does only what is missing).
#   Debian: PostgreSQL server, ffmpeg, a Java runtime and the PostgreSQL JDBC jar (for Spark), Chromium
#   (the web app's browser tests drive it with Playwright), Prometheus and Alertmanager (promtool and
#   amtool check the alert rules and routing; the tests start a real Prometheus), flite and espeak-ng
#   (offline text-to-speech for films' voice-over) and a font for subtitles burned into films.
#   Python: a virtual environment in .venv with the project and its pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in postgresql pgbouncer ffmpeg libpostgresql-jdbc-java chromium prometheus prometheus-alertmanager flite espeak-ng \
           fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v java >/dev/null 2>&1 || missing+=("openjdk-17-jre-headless")
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi

# Reinstall only when the dependency pins change.
stamp=.venv/.videogen-deps
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python dependencies (pinned in constraints.txt)"
  .venv/bin/pip install -q --upgrade pip setuptools wheel
  # torch first and exactly pinned: a looser requirement would pull the CUDA build (gigabytes).
  .venv/bin/pip install -q -c constraints.txt "torch==2.13.0"
  .venv/bin/pip install -q -c constraints.txt -e ".[test]"
  echo "$want" > "$stamp"
fi
