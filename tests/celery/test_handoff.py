"""A rolling deploy: a worker that lacks a workflow's code (or has another version of it) runs beside one
that has it. Runs are never held up by it: it hands each run it cannot drive to a live worker with
another version (its own queue, the versions tried carried along) instead of marking it stuck and backing
off; a run is stuck only when no live worker is left to try, and resumes once one starts. Real `celery
worker` processes on a real Redis-compatible server; the runs are started while both workers are up, so
the bad worker takes some of their wake and activity messages in flight."""

from __future__ import annotations

import re
import time

import pytest
import redis

from beluga import workflow
from tests.executors.helpers import eventually
from tests.fleet import WORKER_IMPORTS

RUNS, STEPS = 40, 3
LEASE = 3.0  # BELUGA_LEASE_SECONDS of the test fleet (tests.fleet.fleet_env)
STUCK_RETRY = 30.0  # a run marked stuck waits this long at least: far beyond any run here
NEW = f"{WORKER_IMPORTS},tests.celery.deploy_workflows"
BAD = {"missing": WORKER_IMPORTS,  # imports fine, the activities included, but not deploy_steps
       "older": f"{WORKER_IMPORTS},tests.celery.deploy_workflows_v1"}  # deploy_steps as it was


def _handed_on(log: str) -> set[str]:
    return set(re.findall(r"workflow (\S+): its code is missing here or does not match its history; handed on", log))


@pytest.mark.parametrize("bad_code", sorted(BAD))
def test_a_worker_without_the_code_hands_runs_on_and_none_is_stuck(private_fleet, bad_code: str) -> None:
    fleet = private_fleet
    healthy = fleet.start_worker("healthy", BELUGA_IMPORTS=NEW, BELUGA_STUCK_RETRY_SECONDS=str(STUCK_RETRY))
    bad = fleet.start_worker("bad", BELUGA_IMPORTS=BAD[bad_code], BELUGA_STUCK_RETRY_SECONDS=str(STUCK_RETRY))
    healthy.wait_ready()
    bad.wait_ready()
    ex = fleet.executor()
    handles = [ex.execute("deploy_steps", workflow.WorkflowOptions(id=f"deploy-{i}", input={"steps": STEPS}))
               for i in range(RUNS)]
    open_runs, looks = {h.id for h in handles}, 0
    deadline = time.monotonic() + 120
    while open_runs and time.monotonic() < deadline:  # never shown stuck while running
        for wid in sorted(open_runs):
            state = ex.describe(wid)
            assert state.error is None, (wid, state.error)
            looks += 1
            if not state.status.is_open:
                open_runs.discard(wid)
    assert not open_runs, f"{len(open_runs)} runs still open after 120 s"

    results = [h.result(timeout=5) for h in handles]
    versions = {"v2"} if bad_code == "missing" else {"v1", "v2"}
    assert all(r[0] in versions and r[1] == sum(range(1, STEPS + 1)) for r in results), results
    states = [ex.describe(h.id) for h in handles]
    assert all(s.status is workflow.WorkflowStatus.COMPLETED and s.error is None for s in states)
    assert not [e for s in states for e in s.history if e.attrs.get("deferred")]  # no input kept as if stuck
    for w in (healthy, bad):
        assert "is stuck" not in w.log(), w.log()[-3000:]
    # the fault hit work in flight: the bad worker took some of these runs' messages and handed them on
    handed = _handed_on(bad.log()) & {h.id for h in handles}
    assert handed, bad.log()[-3000:]
    if bad_code == "missing":  # it ran some of their activities too, and handed on what they led to
        assert "activity:fleet_step" in bad.log()
    # queries too: each is answered by a worker whose code replays the run (the version that ran it)
    assert [ex.query(h.id, "version") for h in handles] == [r[0] for r in results]
    queries = set(re.findall(r"a query of workflow (\S+): its code is missing here", bad.log()))
    if bad_code == "missing":
        assert queries, bad.log()[-3000:]
    # every activity took effect once, none ran twice
    calls = redis.Redis.from_url(fleet.url).hgetall("test:runs")
    assert len(calls) == RUNS * STEPS and set(calls.values()) == {b"1"}
    worst = max(s.history[-1].timestamp - s.created_at for s in states)
    # no run waited on a stuck backoff (STUCK_RETRY) nor on the sweep's safety net more than a few times
    assert worst < 4 * LEASE, f"worst latency {worst:.2f}s"
    print(f"\n{bad_code}: {RUNS}/{RUNS} completed, 0 stuck ({looks} looks), {len(handed)} runs and {len(queries)} "
          f"queries handed on by the bad worker, worst latency {worst:.2f}s")


def test_a_run_no_live_worker_can_drive_is_stuck_and_resumes_when_one_starts(private_fleet) -> None:
    fleet = private_fleet
    # a worker that had deploy_steps announced its name (so clients may start it) and stopped cleanly
    first = fleet.start_worker("first", BELUGA_IMPORTS=NEW)
    first.wait_ready()
    first.stop()
    bad = fleet.start_worker("bad", BELUGA_IMPORTS=WORKER_IMPORTS, BELUGA_STUCK_RETRY_SECONDS="1")
    bad.wait_ready()
    ex = fleet.executor()
    handles = [ex.execute("deploy_steps", workflow.WorkflowOptions(id=f"alone-{i}", input={"steps": STEPS}))
               for i in range(5)]
    for h in handles:
        stuck = eventually(lambda h=h: (s := ex.describe(h.id)).error and s, timeout=30)
        assert stuck.status is workflow.WorkflowStatus.RUNNING
        assert stuck.error["type"] == "ConfigurationError" and "deploy_steps" in stuck.error["message"]
    assert "is stuck" in bad.log()
    assert not _handed_on(bad.log())  # the stopped worker withdrew: nobody to hand the runs to

    fleet.start_worker("fixed", BELUGA_IMPORTS=NEW).wait_ready()
    assert [h.result(timeout=60) for h in handles] == [["v2", 6]] * len(handles)
    assert all(ex.describe(h.id).error is None for h in handles)
