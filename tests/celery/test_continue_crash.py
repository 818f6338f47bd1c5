"""Continue-as-new's crash backup, with real processes: the pool process that carries out a
continue-as-new dies (`os._exit(9)`, injected by tests/celery/crash_continue.py) after the step that
records it and before the next run is created. The backup armed by that very step creates the next run,
once, and the chain completes."""

from __future__ import annotations

import time
import uuid

import redis

from beluga import workflow
from tests.fleet import WORKER_IMPORTS

IMPORTS = f"{WORKER_IMPORTS},tests.celery.queue_workflows,tests.celery.crash_continue"


def test_process_dies_between_continue_as_new_and_the_next_run(private_fleet) -> None:
    fleet = private_fleet
    for name in ("k1", "k2"):
        fleet.start_worker(name, BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS="1")
    for w in fleet.workers:
        w.wait_ready()
    r = redis.Redis.from_url(fleet.url)
    ex = fleet.executor()
    wid = f"crash-continue-{uuid.uuid4().hex[:8]}"
    handle = ex.execute("fleet_hops", workflow.WorkflowOptions(id=wid, input={"n": 0, "until": 3}))
    assert handle.result(timeout=60) == 3
    crashed = r.get(f"test:crashed:{wid}")
    assert crashed is not None, "the injected crash did not happen"
    # the process died with the continue-as-new recorded as the run's last event, the next run not created
    assert r.lrange("test:crash-seen", 0, -1) == [b"['workflow_continued_as_new']"]
    deadline = time.monotonic() + 20  # the worker's main process notices a dead pool process within seconds
    while not any("exited with 'exitcode 9'" in w.log() for w in fleet.workers):
        assert time.monotonic() < deadline, "no pool process died"
        time.sleep(0.2)
    assert any("continued as new, but its next run was never created" in w.log() for w in fleet.workers)
    # every continuation was created exactly once: the crashed one by its backup, the others directly
    # (their backups fired later and did nothing)
    continued = {k.decode(): int(v) for k, v in r.hgetall("test:continued").items()}
    assert continued.get(crashed.decode()) == 1, continued
    assert sorted(continued.values()) == [1, 1, 1], continued
    steps = {k.decode(): int(v) for k, v in r.hgetall("test:hop-steps").items() if k.decode().startswith(wid)}
    assert sorted(steps.values()) == [1, 1, 1, 1], steps  # one activity per run, four runs, each ran once
    final = ex.describe(wid)
    assert final.status is workflow.WorkflowStatus.COMPLETED
    assert final.history[0].attrs.get("continued_from") in continued
    time.sleep(2 * 1.0 + 1.5)  # every backup has fired by now (2 x the lease after its step): each a no-op
    assert {k.decode(): int(v) for k, v in r.hgetall("test:continued").items()} == continued
    after = ex.describe(wid)
    assert (after.run_id, after.status, len(after.history)) == (final.run_id, final.status, len(final.history))
