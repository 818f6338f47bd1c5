"""Executor contract, reset (issue 17 item 5): a new run of the same id replays the old history up to a
workflow-task boundary and continues on the current code; the old run is kept as `<id>/runs/<n>`; what
the reset throws away is reported; signals after the point are applied again; a point that is not a
boundary is refused and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.core.reset import ResetError
from beluga.workflow import Signal, WorkflowOptions
from tests.executors import workflows as W
from tests.executors.helpers import eventually, wait_for_event

Ids = Callable[[], str]
pytestmark = pytest.mark.not_temporal("Temporal resets with its own ResetWorkflowExecution: the point is one of its "
                                      "own WorkflowTaskCompleted events and Temporal keeps the old run itself "
                                      "(docs/temporal.md; tests/temporal/test_reset.py)")


def _failed_at_step_2(executor: workflow.DurableExecutor, wid: str, **spec: object) -> None:
    W.set_broken(wid, [2])
    handle = executor.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 3, **spec}))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=30)
    W.set_broken(wid, [])  # the fix is deployed


def _steps_run(wid: str, n: int) -> int:
    return sum(c["n"] == n for c in W.calls(wid))


def test_last_good_continues_after_the_last_step_that_worked(executor: workflow.DurableExecutor,
                                                             new_id: Ids) -> None:
    wid = new_id()
    _failed_at_step_2(executor, wid)
    old = executor.describe(wid)
    done = executor.reset(wid, "last-good", identity="ops@test")
    assert done.previous_run_id == old.run_id and done.run_id != old.run_id
    assert done.kept == f"{wid}/runs/1" and not done.terminated
    completed = [ev.id for ev in old.history if ev.type == "activity_completed"]
    assert done.point == completed[0]  # step 1's end: the last boundary before step 2 was scheduled
    assert done.dropped_events == len(old.history) - done.point
    assert [a["name"] for a in done.discarded_activities] == ["numbered_step"]
    assert executor.get_handle(wid).result(timeout=30) == [1, 2, 3]
    assert _steps_run(wid, 1) == 1  # replayed, not run again
    new = executor.describe(wid)
    assert new.run_id == done.run_id
    assert new.history[0].attrs["reset"] == {"from_run": old.run_id, "to_event": done.point, "identity": "ops@test"}
    assert [ev.type for ev in new.history[:done.point]] == [ev.type for ev in old.history[:done.point]]
    kept = executor.describe(f"{wid}/runs/1")
    assert kept.status is workflow.WorkflowStatus.FAILED and kept.run_id == old.run_id


def test_first_replays_nothing_but_the_start_and_reapplies_signals(executor: workflow.DurableExecutor,
                                                                   new_id: Ids) -> None:
    wid = new_id()
    W.set_broken(wid, [2])
    handle = executor.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 2, "signal_after": 1}))
    executor.signal(wid, Signal("go", "payload-1"))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=30)
    W.set_broken(wid, [])
    done = executor.reset(wid, "first")
    assert done.point == 1 and done.reapplied_signals == ["go"]
    assert executor.get_handle(wid).result(timeout=30) == [1, "payload-1", 2]
    assert _steps_run(wid, 1) == 2  # from the start: step 1 ran again
    signals = [ev for ev in executor.describe(wid).history if ev.type == "signal_received"]
    assert len(signals) == 1 and signals[0].attrs.get("reapplied") is True


def test_an_event_id_that_is_not_a_boundary_is_refused_and_changes_nothing(executor: workflow.DurableExecutor,
                                                                           new_id: Ids) -> None:
    wid = new_id()
    _failed_at_step_2(executor, wid)
    old = executor.describe(wid)
    scheduled = next(ev.id for ev in old.history if ev.type == "activity_scheduled")
    with pytest.raises(ResetError, match=f"event #{scheduled} \\(activity_scheduled\\) is not a workflow-task "
                                         "boundary"):
        executor.reset(wid, scheduled)
    with pytest.raises(ResetError, match="has no event #999"):
        executor.reset(wid, 999)
    with pytest.raises(ResetError, match="give an event id, 'first' or 'last-good'"):
        executor.reset(wid, "latest")
    assert executor.describe(wid).run_id == old.run_id
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(f"{wid}/runs/1")


def test_an_explicit_boundary_and_a_run_without_failure(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    executor.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 2})).result(timeout=30)
    with pytest.raises(ResetError, match="no failure to reset before"):
        executor.reset(wid, "last-good")
    old = executor.describe(wid)
    second_end = [ev.id for ev in old.history if ev.type == "activity_completed"][1]
    done = executor.reset(wid, second_end)
    assert done.discarded_activities == []
    assert executor.get_handle(wid).result(timeout=30) == [1, 2]
    assert _steps_run(wid, 1) == 1 and _steps_run(wid, 2) == 1  # both replayed; only the close is redone


def test_an_open_run_is_terminated_then_reset(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_steps, WorkflowOptions(id=wid, input={"key": wid, "steps": 2, "signal_after": 1}))
    wait_for_event(executor, wid, "activity_completed", timeout=30)
    done = executor.reset(wid, "first")
    assert done.terminated and done.run_id != handle.run_id
    kept = executor.describe(done.kept)
    assert kept.status is workflow.WorkflowStatus.CANCELED
    assert any(ev.type == "workflow_terminated" for ev in kept.history)
    eventually(lambda: _steps_run(wid, 1) == 2, 30, what="step 1 to run again")
    executor.signal(wid, Signal("go", "late"))
    assert executor.get_handle(wid).result(timeout=30) == [1, "late", 2]


def test_a_timer_in_flight_at_the_point_fires_in_the_new_run(executor: workflow.DurableExecutor,
                                                            new_id: Ids) -> None:
    wid = new_id()
    W.set_broken(wid, [1])
    handle = executor.execute(W.wf_timer_across_reset, WorkflowOptions(id=wid, input={"key": wid, "seconds": 0.3}))
    executor.signal(wid, Signal("go", "g"))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=30)
    W.set_broken(wid, [])
    old = executor.describe(wid)
    signal_at = next(ev.id for ev in old.history if ev.type == "signal_received")
    fired_at = next(ev.id for ev in old.history if ev.type == "timer_fired")
    assert fired_at > signal_at  # the timer was still running at the point
    done = executor.reset(wid, signal_at)
    assert done.point == signal_at and done.reapplied_signals == []
    assert executor.get_handle(wid).result(timeout=30) == ["g", 1]  # the timer fired again: it was re-armed
    assert [ev.type for ev in executor.describe(wid).history].count("timer_fired") == 1


def test_an_attempt_in_flight_at_the_point_counts_as_lost_and_is_retried(executor: workflow.DurableExecutor,
                                                                         new_id: Ids) -> None:
    wid = new_id()
    W.set_broken(wid, [2])
    handle = executor.execute(W.wf_attempt_across_reset, WorkflowOptions(id=wid, input={"key": wid, "seconds": 0.5}))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=30)
    W.set_broken(wid, [])
    old = executor.describe(wid)
    quick_end = next(ev.id for ev in old.history if ev.type == "activity_completed" and ev.attrs["seq"] == 2)
    slow_end = next(ev.id for ev in old.history if ev.type == "activity_completed" and ev.attrs["seq"] == 1)
    assert slow_end > quick_end  # the slow attempt was still running at the point
    executor.reset(wid, quick_end)
    assert executor.get_handle(wid).result(timeout=30) == [1, 2, 2]  # attempt 1 lost: attempt 2 gave the result
    failed = [ev.attrs for ev in executor.describe(wid).history if ev.type == "activity_failed"]
    assert [(f["seq"], f["attempt"], f["error"]["type"]) for f in failed] == [(1, 1, "AttemptLost")]
