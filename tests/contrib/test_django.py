"""Django: the example project (examples/django_project) with real workers. Beluga's own worker started
with DJANGO_SETTINGS_MODULE reads the project's settings (no BELUGA_* in the environment), and the
project's own Celery app, with `beluga.celery.install(app)`, runs the team's tasks and Beluga's on one
worker pool; the web side starts and approves orders and serves the console through Django's URLs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from beluga import workflow
from tests.fleet import ROOT, Worker, redis_server, wait_progress

pytest.importorskip("django")
PROJECT = ROOT / "examples" / "django_project"


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELUGA_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="shop.settings", SHOP_BROKER_URL=url, SHOP_REDIS_URL=url,
               PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT)]), PYTHONUNBUFFERED="1",
               BELUGA_LEASE_SECONDS="3")
    return env


@pytest.fixture
def server() -> Iterator[str]:
    with redis_server() as url:
        yield url


def test_beluga_worker_reads_the_django_settings(server: str, tmp_path: Path) -> None:
    """`celery -A beluga worker` with DJANGO_SETTINGS_MODULE: broker from CELERY_BROKER_URL, histories
    from BELUGA_REDIS_URL, workflows from BELUGA_IMPORTS, all in settings.py; Django set up for the
    activities (they read settings.SHOP_NAME)."""
    worker = Worker(_env(server), "beluga-django", tmp_path, concurrency=1, cwd=PROJECT)
    try:
        worker.wait_ready()
        assert "imports shop.workflows" in worker.log()
        ex = workflow.new("celery", workflow.Config(extra={"broker_url": server, "redis_url": server}))
        wid = f"shop-{uuid.uuid4().hex[:6]}"
        handle = ex.execute("shop_order", workflow.WorkflowOptions(id=wid, input=wid))
        wait_progress(ex, wid)
        ex.signal(wid, workflow.Signal("approve", "approved"))
        assert handle.result(timeout=30) == f"The Beluga Shop shipped order {wid}"
    finally:
        worker.stop()


def test_the_teams_own_celery_app_runs_beluga(server: str, tmp_path: Path) -> None:
    """`celery -A shop worker`: the team's app with Beluga installed, one pool for the team's task and the
    workflow; the Django side (a process of its own) starts, approves and shows the order."""
    worker = Worker(_env(server), "shop", tmp_path, concurrency=2, queues=None, app="shop.celery", cwd=PROJECT)
    try:
        worker.wait_ready()
        wid = f"shop-{uuid.uuid4().hex[:6]}"
        out = subprocess.run([sys.executable, str(ROOT / "tests" / "contrib" / "django_client.py"), wid],
                             env=_env(server), cwd=str(PROJECT), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:] + worker.log()[-3000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen == {"added": 5, "same_app": True, "console_forbidden": 403, "approve": 302,
                        "result": f"The Beluga Shop shipped order {wid}", "console_runs": True,
                        "console_run": [200, True], "orders_page": True}, seen
        deadline = time.monotonic() + 5
        while "activity:ship_order" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = worker.log()
        assert "shop.tasks.add" in log and "activity:check_order" in log and "activity:ship_order" in log
    finally:
        worker.stop()
