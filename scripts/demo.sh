#!/usr/bin/env bash
# The main job: install Beluga into .venv and run the order workflow end to end on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python -m beluga.demo "$@"
