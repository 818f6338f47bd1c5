"""A run whose code changed under it, in the fleet: the same behaviour as in-process. The reason is
in `describe().error` and the logs, queries get `NonDeterminismError` (not a generic remote error),
inputs that arrive meanwhile are kept, retries back off on one chain, and a worker with matching
code carries the run on by itself."""

from __future__ import annotations

import time

import pytest

from beluga import workflow
from tests.executors.helpers import eventually

CHANGED = "tests.celery.changed_workflows"


def test_stuck_run_reports_keeps_inputs_and_resumes_with_matching_code(private_fleet) -> None:
    fleet = private_fleet
    original = fleet.start_worker("orig", BELUGA_STUCK_RETRY_SECONDS="1")
    original.wait_ready()
    ex = fleet.executor()
    handle = ex.execute("wf_versioned", workflow.WorkflowOptions(id="nd-fleet", input=1))
    parked = eventually(lambda: (s := ex.describe(handle.id)).history[-1].type == "activity_completed" and s)
    original.stop()

    changed = fleet.start_worker("changed", BELUGA_IMPORTS=CHANGED, BELUGA_STUCK_RETRY_SECONDS="1")
    changed.wait_ready()
    ex.signal(handle.id, workflow.Signal("go", "kept while stuck"))
    stuck = eventually(lambda: (s := ex.describe(handle.id)).error and s, timeout=20)
    assert stuck.status is workflow.WorkflowStatus.RUNNING
    assert stuck.error["type"] == "NonDeterminismError"
    assert "event #2 records activity 'echo' (seq 1), but the code asked for timer of 1s" in stuck.error["message"]
    # the signal is recorded, deferred, with nothing after it: the changed code ran nothing
    assert [e.type for e in stuck.history] == [e.type for e in parked.history] + ["signal_received"]
    assert stuck.history[-1].attrs.get("deferred") is True
    assert ex.query(handle.id, "status") is workflow.WorkflowStatus.RUNNING
    with pytest.raises(workflow.NonDeterminismError):
        ex.query(handle.id, "anything")
    time.sleep(4)  # retries at 1 s, 2 s, 4 s: a few looks, not one per sweep
    assert changed.log().count("is stuck") == 1
    looks = changed.log().count("coordinate[") + changed.log().count("wake[")  # a run's or its shard's task
    assert 1 <= looks <= 8, changed.log()[-3000:]
    assert ex.describe(handle.id).history == stuck.history  # still untouched
    changed.stop()

    fleet.start_worker("fixed").wait_ready()  # matching code again: the retry chain finds it
    assert handle.result(timeout=30) == [1, "kept while stuck", 2]
    assert ex.describe(handle.id).error is None


def test_a_run_whose_workflow_no_worker_has_can_be_cancelled_and_terminated(private_fleet) -> None:
    """Started by a name while no worker had announced anything (so the client could not know better):
    the run is stuck with the reason, and closes on cancel or terminate without any code; once workers
    have announced their names, the same name is refused at execute."""
    fleet = private_fleet
    ex = fleet.executor()
    cancelled = ex.execute("nobody_has_this", workflow.WorkflowOptions(id="unrunnable-1"))
    terminated = ex.execute("nobody_has_this", workflow.WorkflowOptions(id="unrunnable-2"))
    fleet.start_worker("w", BELUGA_STUCK_RETRY_SECONDS="1").wait_ready()
    for handle in (cancelled, terminated):
        stuck = eventually(lambda h=handle: (s := ex.describe(h.id)).error and s, timeout=20)
        assert stuck.error["type"] == "ConfigurationError" and "nobody_has_this" in stuck.error["message"]
    ex.cancel(cancelled.id)
    with pytest.raises(workflow.WorkflowCancelled):
        cancelled.result(timeout=20)
    ex.terminate(terminated.id, "no code for it")
    with pytest.raises(workflow.WorkflowCancelled):
        terminated.result(timeout=20)
    assert ex.describe(terminated.id).error["type"] == "Terminated"
    assert ex.describe(terminated.id).history[-1].type == "workflow_terminated"
    with pytest.raises(workflow.ConfigurationError, match="nobody_has_this"):
        ex.execute("nobody_has_this", workflow.WorkflowOptions(id="unrunnable-3"))
