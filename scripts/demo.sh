#!/usr/bin/env bash
# Installs what it needs, then runs the gateway with the built-in demo (no external server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/callin demo "$@"
