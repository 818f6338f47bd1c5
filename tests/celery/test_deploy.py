"""A deploy that leaves a worker without its code stops that worker, loudly: a module of BELUGA_IMPORTS
that is missing or raises at import (any exception, any position in the list) makes `celery worker` exit
with status 78 before it consumes anything, naming every module that failed and its error. The
directory a worker is started from is importable (as `celery -A` makes it only while it finds the app),
and a team's own app with `beluga.celery.install` routes every Beluga task, wakes included, to
Beluga's queue. Real `celery worker` processes and a real Redis-compatible server."""

from __future__ import annotations

import sys
from pathlib import Path

import redis

from beluga import workflow
from tests.fleet import WORKER_IMPORTS, Worker, fleet_env

EX_CONFIG = 78


def _failed_start(fleet, name: str, imports: str) -> Worker:
    worker = Worker(fleet_env(fleet.url, BELUGA_IMPORTS=imports), name, fleet.log_dir)
    fleet.workers.append(worker)
    assert worker.proc.wait(90) == EX_CONFIG, worker.log()[-3000:]
    return worker


def test_a_worker_whose_imports_fail_does_not_start_and_names_each_module(private_fleet) -> None:
    fleet = private_fleet
    r = redis.Redis.from_url(fleet.url)
    # a module that raises (not an ImportError) first, a missing one after it, a good one last
    worker = _failed_start(fleet, "broken", f"tests.celery.broken_imports,no_such_module_xyz,{WORKER_IMPORTS}")
    log = worker.log()
    assert "cannot import tests.celery.broken_imports (BELUGA_IMPORTS): RuntimeError: the deploy left this " \
           "module broken (raised at import)" in log
    assert 'File "' + str(Path(__file__).parent / "broken_imports.py") in log  # with its traceback
    # the modules after it were not skipped: the missing one is named too
    assert "cannot import no_such_module_xyz (BELUGA_IMPORTS): ModuleNotFoundError: No module named " \
           "'no_such_module_xyz'" in log
    assert "beluga worker: not starting: cannot import tests.celery.broken_imports (RuntimeError: " in log
    assert " ready." not in log
    # it never joined the fleet: nothing announced, nothing taken from the broker
    assert not r.keys("beluga:{fleet}:*") and r.hlen("unacked") == 0

    worker = _failed_start(fleet, "missing", f"{WORKER_IMPORTS},no_such_module_xyz")
    assert "cannot import no_such_module_xyz (BELUGA_IMPORTS): ModuleNotFoundError" in worker.log()


def test_the_directory_a_worker_starts_in_is_importable(private_fleet, tmp_path: Path) -> None:
    """`BELUGA_IMPORTS=cwd_workflows celery -A beluga worker` in the module's directory, with the `celery`
    script (which, unlike `python -m celery`, does not put the directory on the path)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "cwd_workflows.py").write_text(
        "from beluga import workflow\n\n\n@workflow.defn()\ndef cwd_double(ctx, x):\n    return 2 * x\n")
    fleet = private_fleet
    worker = Worker(fleet_env(fleet.url, BELUGA_IMPORTS="cwd_workflows"), "cwd", fleet.log_dir, cwd=app_dir,
                    program=(str(Path(sys.executable).parent / "celery"),))
    fleet.workers.append(worker)
    worker.wait_ready()
    assert fleet.executor().execute("cwd_double", workflow.WorkflowOptions(input=21)).result(timeout=30) == 42


def test_install_routes_every_beluga_task_to_belugas_queue(private_fleet) -> None:
    """The team's worker consumes only `team` (and what Beluga adds): a timer's wake task, sent by the
    worker's own scheduler through the team's app, must reach it; before, `beluga.wake` went to Celery's
    default queue `celery`, which nobody consumed, and the run never woke."""
    fleet = private_fleet
    worker = Worker(fleet_env(fleet.url, TEAM_BROKER_URL=fleet.url), "team", fleet.log_dir, queues="team",
                    app="tests.celery.team_app")
    fleet.workers.append(worker)
    worker.wait_ready()
    ex = fleet.executor()
    handles = [ex.execute("wf_sleep", workflow.WorkflowOptions(input=0.2)) for _ in range(3)]
    assert [h.result(timeout=30) for h in handles] == ["woke"] * 3
    r = redis.Redis.from_url(fleet.url)
    assert r.llen("celery") == 0  # nothing of Beluga's was left where nobody looks
