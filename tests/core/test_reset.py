"""The reset plan, pure (beluga/core/reset.py): which events are boundaries, what `first` and `last-good`
name, and what a reset keeps, marks owed, applies again and reports as thrown away."""

from __future__ import annotations

import pytest

from beluga.core.records import Event, WorkflowState, WorkflowStatus
from beluga.core.reset import ResetError, boundaries, plan_reset, resolve


def _history(*specs: tuple[str, dict]) -> tuple[Event, ...]:
    return tuple(Event(i + 1, t, 100.0 + i, a) for i, (t, a) in enumerate(specs))


RUN = _history(
    ("workflow_started", {"workflow_type": "w", "input": 1, "seed": 7, "deadline": 160.0}),  # 1
    ("activity_scheduled", {"seq": 1, "name": "a"}),                                        # 2
    ("activity_started", {"seq": 1, "attempt": 1}),                                         # 3
    ("activity_completed", {"seq": 1, "attempt": 1, "result": "ok"}),                       # 4
    ("activity_scheduled", {"seq": 2, "name": "b"}),                                        # 5
    ("activity_started", {"seq": 2, "attempt": 1}),                                         # 6
    ("signal_received", {"name": "go", "payload": 1, "sender_id": None}),                   # 7
    ("activity_failed", {"seq": 2, "attempt": 1, "error": {}, "retry_in": 0.1}),            # 8: retried
    ("activity_started", {"seq": 2, "attempt": 2}),                                         # 9
    ("update_accepted", {"update_id": "u-1", "name": "add", "args": []}),                   # 10
    ("workflow_cancel_requested", {}),                                                      # 11
    ("activity_failed", {"seq": 2, "attempt": 2, "error": {}, "retry_in": None}),           # 12: for good
    ("workflow_failed", {"error": {}}),                                                     # 13
)


def _closed(history: tuple[Event, ...]) -> WorkflowState:
    return WorkflowState("w-1", "run-1", "w", WorkflowStatus.FAILED, 1, history=history, created_at=100.0)


def test_boundaries_are_the_inputs_the_code_reacted_to_outside_a_childs_life() -> None:
    assert boundaries(RUN) == [1, 4, 7, 10, 11, 12]
    with_child = _history(("workflow_started", {}), ("child_workflow_started", {"seq": 1}),
                          ("signal_received", {"name": "s"}), ("child_workflow_completed", {"seq": 1}),
                          ("timer_fired", {"seq": 2}))
    assert boundaries(with_child) == [1, 4, 5]  # the signal came while the child lived


def test_first_last_good_and_event_ids() -> None:
    assert resolve(RUN, "first") == 1
    assert resolve(RUN, "last-good") == 4  # before activity b (seq 2, scheduled at #5) failed for good
    assert resolve(RUN, 7) == 7 and resolve(RUN, "10") == 10
    with pytest.raises(ResetError, match=r"event #8 \(activity_failed\) is not a workflow-task boundary.*"
                                         r"the nearest are #7 and #10"):
        resolve(RUN, 8)
    with pytest.raises(ResetError, match="no failure to reset before"):
        resolve(RUN[:7], "last-good")
    assert resolve(RUN[:7], "last-good", stuck_at=5) == 4  # a stuck run: before where the code diverged
    with pytest.raises(ResetError, match="has no event #0"):
        resolve(RUN, 0)


def test_the_plan_keeps_marks_owed_reapplies_and_reports() -> None:
    plan = plan_reset(_closed(RUN), "last-good", run_id="run-2", now=500.0, identity="ops")
    new = plan.state
    assert (new.run_id, new.status, new.workflow_id, new.error) == ("run-2", WorkflowStatus.RUNNING, "w-1", None)
    assert [ev.id for ev in new.history] == [1, 2, 3, 4, 5]
    assert new.history[:3] == (RUN[0].__class__(1, "workflow_started", 100.0, {
        **RUN[0].attrs, "deadline": 560.0, "reset": {"from_run": "run-1", "to_event": 4, "identity": "ops"}}),
        RUN[1], RUN[2])
    assert new.history[3].attrs == {**RUN[3].attrs, "deferred": True}  # its commands are owed
    assert (new.history[4].type, new.history[4].attrs["name"], new.history[4].attrs["reapplied"],
            new.history[4].attrs["deferred"]) == ("signal_received", "go", True, True)
    assert plan.point == 4 and plan.dropped_events == 9
    assert plan.discarded_activities == [{"seq": 2, "name": "b"}]
    assert plan.reapplied_signals == ["go"] and plan.dropped_updates == ["u-1"] and plan.dropped_cancel
    quiet = plan_reset(_closed(RUN), "last-good", run_id="run-3", now=500.0, reapply_signals=False)
    assert len(quiet.state.history) == 4 and quiet.reapplied_signals == []


def test_an_open_run_is_not_planned() -> None:
    with pytest.raises(ResetError, match="still running"):
        plan_reset(WorkflowState("w-1", "r", "w", history=RUN[:4]), "first", run_id="x", now=0.0)
