#!/usr/bin/env bash
# The whole test suite. Installs what it needs, then runs pytest inside a network namespace that has only
# loopback (`unshare -rn`), so no packet of the media and browser tests can leave the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec unshare -rn sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
