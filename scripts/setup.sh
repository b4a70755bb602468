#!/usr/bin/env bash
# Installs what Callin needs into .venv (idempotent). With --test also the test extras and Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi
stamp=".venv/.installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  touch "$stamp"
fi

if [ "${1:-}" = "--test" ]; then
  need=""
  command -v chromium >/dev/null 2>&1 || need="$need chromium"
  command -v unshare >/dev/null 2>&1 || need="$need util-linux"
  command -v ip >/dev/null 2>&1 || need="$need iproute2"
  if [ -n "$need" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need fonts-dejavu-core >/dev/null
  fi
fi
