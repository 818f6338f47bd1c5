"""`owed`: what a reloaded run is owed, read from its history alone (pure: tested with histories)."""

from __future__ import annotations

from typing import Any

from beluga.core import steps as st
from beluga.core.failure import process_lost
from beluga.core.records import Event, EventType, WorkflowState, WorkflowStatus
from beluga.core.recovery import (
    ArmDeadline,
    AttemptInterrupted,
    ChildToCheck,
    ContinuationOwed,
    ParentToNotify,
    RearmTimer,
    RetryDue,
    TakeStep,
    backups_owed,
    continuation_owed,
    owed,
)

E = EventType


def run(*events: tuple[EventType, float, dict[str, Any]], error: dict[str, Any] | None = None) -> WorkflowState:
    history = tuple(Event(i + 1, kind, at, attrs) for i, (kind, at, attrs) in enumerate(events))
    return WorkflowState("w", "r", "wf", error=error, history=history)


STARTED = (E.WORKFLOW_STARTED, 100.0, {"input": None})


def test_a_run_that_never_took_its_first_step_owes_one() -> None:
    assert owed(run((E.WORKFLOW_STARTED, 100.0, {"deadline": 160.0}))) == [ArmDeadline(160.0), TakeStep()]


def test_timers_retries_interrupted_attempts_and_children_are_owed_in_order() -> None:
    state = run(STARTED,
                (E.TIMER_STARTED, 101.0, {"seq": 1, "fire_at": 161.0}),
                (E.ACTIVITY_SCHEDULED, 101.0, {"seq": 2, "name": "a", "input": 1}),
                (E.ACTIVITY_STARTED, 101.0, {"seq": 2, "attempt": 1}),
                (E.ACTIVITY_FAILED, 102.0, {"seq": 2, "attempt": 1, "error": {}, "retry_in": 5.0}),
                (E.ACTIVITY_SCHEDULED, 101.0, {"seq": 3, "name": "b", "input": 2}),
                (E.ACTIVITY_STARTED, 101.0, {"seq": 3, "attempt": 1}),
                (E.CHILD_WORKFLOW_STARTED, 101.0, {"seq": 4, "workflow_id": "c"}),
                (E.TIMER_STARTED, 101.0, {"seq": 5, "fire_at": 130.0}),
                (E.TIMER_FIRED, 130.0, {"seq": 5}))
    assert owed(state) == [RearmTimer(1, 161.0), RetryDue(2, 2, 107.0), AttemptInterrupted(3, 1, process_lost(1)),
                           ChildToCheck(4, {"seq": 4, "workflow_id": "c"})]


def test_a_stuck_run_owes_a_step_besides_its_waits() -> None:
    state = run(STARTED, (E.TIMER_STARTED, 101.0, {"seq": 1, "fire_at": 161.0}),
                error={"type": "NonDeterminismError", "message": "m"})
    assert owed(state) == [TakeStep(), RearmTimer(1, 161.0)]


def test_a_recorded_continue_as_new_owes_the_next_run_and_nothing_else() -> None:
    state = run(STARTED, (E.TIMER_STARTED, 101.0, {"seq": 1, "fire_at": 161.0}),
                (E.WORKFLOW_CONTINUED_AS_NEW, 102.0, {"input": 7}))
    assert owed(state) == [TakeStep()]
    assert continuation_owed(True, state.history[-1]) == ContinuationOwed(7)
    assert continuation_owed(False, state.history[-1]) is None
    assert continuation_owed(True, state.history[0]) is None
    assert continuation_owed(True, None) is None


def test_a_step_owes_backups_for_its_child_its_next_run_and_its_parents_news() -> None:
    effects = [st.ArmTimer(1, 10.0), st.StartChild(2, "wf", "c", None), st.ContinueAsNew(5),
               st.RunClosed(WorkflowStatus.COMPLETED, 1)]
    child = ChildToCheck(2, {"seq": 2, "workflow_type": "wf", "workflow_id": "c"})
    assert backups_owed(effects, has_parent=True) == [child, ContinuationOwed(5), ParentToNotify()]
    assert backups_owed(effects, has_parent=False) == [child, ContinuationOwed(5)]
