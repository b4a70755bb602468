#!/usr/bin/env bash
# Installs what Callin needs into .venv (idempotent). With --test also the test extras and Debian's chromium,
# coturn, iptables, node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi
stamp=".venv/.installed${extras}"
# A C compiler builds the native fast path (gateway/media/_fastpath.c) at install; without one the relay forwards
# in Python and says so once at start.
if ! command -v cc >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc libc6-dev >/dev/null) \
    || echo "no C compiler: the native fast path will not be built (packets are forwarded in Python)"
fi
if ! .venv/bin/python -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-dev >/dev/null) || true
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ gateway/media/_fastpath.c -nt "$stamp" ] || [ bench/_blaster.c -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  touch "$stamp"
fi

if [ "${1:-}" = "--test" ]; then
  need=""
  command -v chromium >/dev/null 2>&1 || need="$need chromium"
  command -v unshare >/dev/null 2>&1 || need="$need util-linux"
  command -v ip >/dev/null 2>&1 || need="$need iproute2"
  command -v npm >/dev/null 2>&1 || need="$need nodejs npm"
  command -v turnserver >/dev/null 2>&1 || need="$need coturn"  # tests/integration/test_turn.py: a real TURN server
  command -v iptables >/dev/null 2>&1 || need="$need iptables"  # ... behind a firewall rule in the test's namespace
  command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"  # speech for the transcript tests (tests/support/speech.py)
  if [ -n "$need" ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need fonts-dejavu-core >/dev/null
  fi
  # TypeScript for tests/unit/test_js_package.py (checks web/caller's .d.ts files); installed here because the
  # tests run in a namespace without network. Same version and place as TS_VERSION/TS_HOME in that test.
  ts_home="${XDG_CACHE_HOME:-$HOME/.cache}/callin/typescript-5.9.3"
  if [ ! -x "$ts_home/node_modules/.bin/tsc" ]; then
    npm install --prefix "$ts_home" --no-audit --no-fund --silent typescript@5.9.3
  fi
  # axe-core for tests/e2e/test_accessibility.py (injected into the pages under test from this file; same version
  # and place as AXE_VERSION/AXE_HOME in tests/e2e/accessibility.py).
  axe_home="${XDG_CACHE_HOME:-$HOME/.cache}/callin/axe-core-4.10.3"
  if [ ! -f "$axe_home/node_modules/axe-core/axe.min.js" ]; then
    npm install --prefix "$axe_home" --no-audit --no-fund --silent axe-core@4.10.3
  fi
fi
