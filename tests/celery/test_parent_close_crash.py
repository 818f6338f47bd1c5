"""The parent-close policy's crash backup, with real processes: the worker that closes a parent dies
(`kill -9` of its whole process group, injected by tests/celery/crash_parent_close.py) after the append
that records the close and before it pushes the children their policy. The backup that very append armed
in the parent's inbox (2 x BELUGA_LEASE_SECONDS later) is carried out by a fresh worker: each child is
terminated, once, and the parent's history is left as it was."""

from __future__ import annotations

import time
import uuid

import redis

from beluga import workflow
from tests.executors import workflows as W
from tests.fleet import WORKER_IMPORTS

IMPORTS = f"{WORKER_IMPORTS},tests.celery.crash_parent_close"


def _wait(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return got


def _types(state: workflow.WorkflowState) -> list[str]:
    return [ev.type for ev in state.history]


def test_worker_dies_between_the_parents_close_and_the_childrens_policy(private_fleet) -> None:
    fleet = private_fleet
    doomed = fleet.start_worker("k1", BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS="1").wait_ready()
    r = redis.Redis.from_url(fleet.url)
    ex = fleet.executor()
    tag = uuid.uuid4().hex[:8]
    parent, children = f"crash-parent-close-{tag}", [f"child-a-{tag}", f"child-b-{tag}"]
    ex.execute(W.wf_parent_close, workflow.WorkflowOptions(id=parent, input=[[c, ""] for c in children]))
    for child in children:
        _wait(lambda child=child: _opened(ex, child), 30, f"child {child} to start")
    ex.signal(parent, workflow.Signal("finish"))

    assert doomed.proc.wait(30) == -9, "the injected crash did not kill the worker"
    assert r.get(f"test:crashed:{parent}") is not None
    # it died with the parent's close recorded as its last event, and no child told
    assert r.lrange("test:crash-seen", 0, -1) == [b"['workflow_completed']"]
    closed = ex.describe(parent)
    assert closed.status is workflow.WorkflowStatus.COMPLETED and closed.result == "parent done"
    for child in children:  # work in flight: the children still run, their policy not applied
        state = ex.describe(child)
        assert state.status is workflow.WorkflowStatus.RUNNING, state
        assert "workflow_terminated" not in _types(state)

    # a fresh worker; the fault fires once per parent, so here it only counts the calls
    fleet.start_worker("k2", BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS="1").wait_ready()
    for child in children:
        state = _wait(lambda child=child: (lambda s: None if s.status.is_open else s)(ex.describe(child)), 60,
                      f"child {child} to close")
        assert state.status is workflow.WorkflowStatus.CANCELED
        assert state.error["type"] == "Terminated"
        assert _types(state).count("workflow_terminated") == 1, _types(state)
        assert state.history[-1].type == "workflow_terminated"
        assert f"parent workflow {parent} completed" in state.error["message"]
        assert W.calls(child) == []  # terminated: no cleanup ran
    # the policy went out twice (the crashed call and the backup, carried out by the fresh worker)
    assert int(r.hget("test:close-children", parent) or 0) == 2
    after = ex.describe(parent)
    assert (after.run_id, after.status, after.result) == (closed.run_id, closed.status, closed.result)
    assert [(ev.id, ev.type, ev.attrs) for ev in after.history] == [(ev.id, ev.type, ev.attrs)
                                                                   for ev in closed.history]


def _opened(ex: workflow.DurableExecutor, workflow_id: str) -> bool:
    try:
        return bool(ex.describe(workflow_id).history)
    except workflow.WorkflowNotFound:
        return False
