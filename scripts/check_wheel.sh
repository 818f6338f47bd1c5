#!/usr/bin/env bash
# Proves the published artefacts, not the checkout: builds the wheel and the sdist, installs the wheel
# with the extras a team uses ([dev,django,metrics]) into a fresh virtual environment, checks that it
# pulls nothing foreign (the name `beluga` on PyPI is another project's) and ships only the `beluga`
# package, then runs the fleet smoke from it outside the source tree (scripts/smoke_wheel.py).
# .ci/run calls it after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/build"
"$tmp/build/bin/python" -m pip install -q --disable-pip-version-check build
"$tmp/build/bin/python" -m build -q --outdir "$tmp/dist" . >/dev/null
wheel=$(ls "$tmp"/dist/beluga_workflows-*.whl)
sdist=$(ls "$tmp"/dist/beluga_workflows-*.tar.gz)
echo "check_wheel: built $(basename "$wheel") and $(basename "$sdist")"

tops=$(python3 -c "import sys, zipfile; print(' '.join(sorted({n.split('/')[0] for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.split('/')[0].endswith(('.dist-info', '.data'))})))" "$wheel")
if [ "$tops" != "beluga" ]; then
    echo "check_wheel: the wheel ships top-level entries other than beluga: $tops" >&2
    exit 1
fi
python3 -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); missing = [n for n in ('beluga/lua/append.lua', 'beluga/lua/lib/append.lua', 'beluga/demo/orders.py') if n not in names]; sys.exit(f'check_wheel: the wheel lacks {missing}' if missing else 0)" "$wheel"

python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[dev,django,metrics]"
"$tmp/venv/bin/python" - <<'PY'
import importlib.metadata as md
import sys

names = {md.metadata(d.metadata["Name"])["Name"].lower().replace("_", "-") for d in md.distributions()}
foreign = sorted(n for n in names if n in {"beluga", "numba", "scipy"} or n.startswith("beluga") and n != "beluga-workflows")
sys.exit(f"check_wheel: installed something foreign: {foreign}" if foreign or "beluga-workflows" not in names else 0)
PY
echo "check_wheel: installed $(basename "$wheel")[dev,django,metrics] into a fresh venv; nothing foreign"
cd "$tmp"
exec "$tmp/venv/bin/python" "$here/scripts/smoke_wheel.py"
