"""`executor.reset` on Temporal: its own ResetWorkflowExecution, to a WorkflowTaskCompleted event of its
own history (beluga/temporal/reset.py), against the session's real Temporal dev server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from beluga import workflow
from beluga.core.reset import ResetError
from beluga.workflow import Signal, WorkflowOptions
from tests.executors import workflows as W
from tests.executors.helpers import eventually


@pytest.fixture
def ex(temporal_server: Any) -> Iterator[workflow.DurableExecutor]:
    executor = workflow.new("temporal", workflow.Config(extra={
        "target": temporal_server.target, "task_queue": f"beluga-r-{uuid.uuid4().hex[:10]}", "worker": True}))
    try:
        yield executor
    finally:
        executor.close()


def test_last_good_reruns_the_failed_step_on_the_fixed_code_and_reapplies_signals(ex) -> None:
    wid = f"t-reset-{uuid.uuid4().hex[:8]}"
    W.set_broken(wid, [2])
    handle = ex.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 2, "signal_after": 1}))
    ex.signal(wid, Signal("go", "p"))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=60)
    W.set_broken(wid, [])
    done = ex.reset(wid, "last-good", identity="ops@test")
    assert done.previous_run_id == handle.run_id and done.run_id != handle.run_id and not done.terminated
    assert [a["name"] for a in done.discarded_activities] == ["numbered_step"]
    assert ex.get_handle(wid).result(timeout=60) == [1, "p", 2]
    assert sum(c["n"] == 1 for c in W.calls(wid)) == 1  # step 1 replayed, not run again


def test_first_on_an_open_run_and_a_point_that_is_no_boundary(ex) -> None:
    wid = f"t-reset-{uuid.uuid4().hex[:8]}"
    handle = ex.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 2, "signal_after": 1}))
    eventually(lambda: W.calls(wid), 30, what="step 1 to run")  # its first workflow task completed
    with pytest.raises(ResetError, match="event #1 is not a workflow-task boundary"):
        ex.reset(wid, 1)
    with pytest.raises(ResetError, match="no failure to reset before"):
        ex.reset(wid, "last-good")
    ex.signal(wid, Signal("go", "early"))
    done = ex.reset(wid, "first")
    assert done.terminated and done.reapplied_signals == ["go"]
    assert ex.get_handle(wid).result(timeout=60) == [1, "early", 2]
    assert handle.run_id != done.run_id
    assert sum(c["n"] == 1 for c in W.calls(wid)) == 2  # from the first task: step 1 ran again
