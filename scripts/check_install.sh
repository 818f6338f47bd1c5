#!/usr/bin/env bash
# Proves the README's local fleet command on a fresh machine's terms: a new virtual environment, the
# README's own install line (read from README.md, so the two cannot drift apart), then
# `python -m beluga.dev --flower --web` started, an order put through it over HTTP, and the fleet stopped
# (scripts/smoke_dev.py). .ci/run calls it after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
line=$(grep -o "pip install -e '\.\[dev\]'" README.md | head -n 1 || true)
if [ -z "$line" ]; then
    echo "check_install: README.md no longer shows \"pip install -e '.[dev]'\"; update this script with it" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
echo "check_install: $line (in a fresh virtual environment)"
(
    # shellcheck disable=SC1091
    source "$tmp/venv/bin/activate"
    eval "$line --quiet --disable-pip-version-check"
    exec python scripts/smoke_dev.py
)
