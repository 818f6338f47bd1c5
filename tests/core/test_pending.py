"""`pending_work(history)`: what a run waits for, read from its history alone (crash recovery)."""

from __future__ import annotations

from typing import Any

import pytest

from beluga.core.pending import Pending, PendingActivity, pending_work
from beluga.core.records import Event, EventType

E = EventType
ERR = {"type": "ValueError", "message": "boom", "traceback": "", "non_retryable": False}


def history(*rows: tuple[str, float, dict[str, Any]]) -> list[Event]:
    return [Event(i, t, ts, a) for i, (t, ts, a) in enumerate(rows, start=1)]


START = (E.WORKFLOW_STARTED, 100.0, {"input": None, "seed": 1})
SCHED = (E.ACTIVITY_SCHEDULED, 100.0, {"seq": 1, "name": "a", "input": 5, "timeout": 2.0, "queue": None})


@pytest.mark.parametrize(("rows", "expected"), [
    pytest.param([START], Pending(), id="just-started"),
    pytest.param([(E.WORKFLOW_STARTED, 100.0, {"deadline": 160.0})], Pending(deadline=160.0), id="deadline"),
    pytest.param([START, SCHED],
                 Pending(activities={1: PendingActivity(1, "a", 5, {"timeout": 2.0}, 1, 100.0, False, 100.0)}),
                 id="scheduled-not-started"),
    pytest.param([START, SCHED, (E.ACTIVITY_STARTED, 101.0, {"seq": 1, "attempt": 1})],
                 Pending(activities={1: PendingActivity(1, "a", 5, {"timeout": 2.0}, 1, 100.0, True, 100.0)}),
                 id="interrupted-mid-attempt"),
    pytest.param([START, SCHED, (E.ACTIVITY_STARTED, 101.0, {"seq": 1, "attempt": 1}),
                  (E.ACTIVITY_FAILED, 102.0, {"seq": 1, "attempt": 1, "error": ERR, "retry_in": 0.5})],
                 Pending(activities={1: PendingActivity(1, "a", 5, {"timeout": 2.0}, 2, 102.5, False, 100.0)}),
                 id="waiting-for-retry"),
    pytest.param([START, SCHED, (E.ACTIVITY_STARTED, 101.0, {"seq": 1, "attempt": 1}),
                  (E.ACTIVITY_FAILED, 102.0, {"seq": 1, "attempt": 1, "error": ERR, "retry_in": 0.5}),
                  (E.ACTIVITY_STARTED, 103.0, {"seq": 1, "attempt": 2})],
                 Pending(activities={1: PendingActivity(1, "a", 5, {"timeout": 2.0}, 2, 102.5, True, 100.0)}),
                 id="retry-interrupted"),
    pytest.param([START, SCHED, (E.ACTIVITY_STARTED, 101.0, {"seq": 1, "attempt": 1}),
                  (E.ACTIVITY_FAILED, 102.0, {"seq": 1, "attempt": 1, "error": ERR, "retry_in": None})],
                 Pending(), id="failed-for-good"),
    pytest.param([START, SCHED, (E.ACTIVITY_STARTED, 101.0, {"seq": 1, "attempt": 1}),
                  (E.ACTIVITY_COMPLETED, 102.0, {"seq": 1, "attempt": 1, "result": 1})],
                 Pending(), id="completed"),
    pytest.param([START, (E.TIMER_STARTED, 100.0, {"seq": 1, "duration": 30.0, "fire_at": 130.0})],
                 Pending(timers={1: 130.0}), id="timer-running"),
    pytest.param([START, (E.TIMER_STARTED, 100.0, {"seq": 1, "duration": 30.0, "fire_at": 130.0}),
                  (E.TIMER_FIRED, 130.0, {"seq": 1})], Pending(), id="timer-fired"),
    pytest.param([START, (E.CHILD_WORKFLOW_STARTED, 100.0, {"seq": 1, "workflow_type": "c",
                                                            "workflow_id": "p/child-1", "input": None})],
                 Pending(children={1: {"seq": 1, "workflow_type": "c", "workflow_id": "p/child-1",
                                       "input": None}}), id="child-running"),
    pytest.param([START, (E.CHILD_WORKFLOW_STARTED, 100.0, {"seq": 1, "workflow_type": "c",
                                                            "workflow_id": "p/child-1", "input": None}),
                  (E.CHILD_WORKFLOW_FAILED, 101.0, {"seq": 1, "error": ERR})], Pending(), id="child-failed"),
    pytest.param([START, (E.SIGNAL_RECEIVED, 101.0, {"name": "go", "payload": 1})], Pending(),
                 id="signals-are-not-pending-work"),
    pytest.param([START, (E.WORKFLOW_COMPLETED, 101.0, {"result": 1})], Pending(closed=True), id="completed-run"),
    pytest.param([START, (E.WORKFLOW_TIMED_OUT, 101.0, {})], Pending(closed=True), id="timed-out-run"),
    pytest.param([START, (E.WORKFLOW_CONTINUED_AS_NEW, 101.0, {"input": 2})], Pending(closed=True),
                 id="continued-as-new"),
    pytest.param([START, (E.ACTIVITY_FAILED, 101.0, {"seq": 9, "attempt": 1, "error": ERR, "retry_in": 1.0}),
                  (E.ACTIVITY_STARTED, 101.0, {"seq": 9, "attempt": 1})], Pending(),
                 id="unknown-seq-ignored"),
])
def test_pending_work(rows: list[tuple[str, float, dict[str, Any]]], expected: Pending) -> None:
    assert pending_work(history(*rows)) == expected


def test_several_activities_and_timers_at_once() -> None:
    rows = [START]
    for seq in (1, 2, 3):
        rows.append((E.ACTIVITY_SCHEDULED, 100.0, {"seq": seq, "name": f"a{seq}", "input": seq}))
    rows.append((E.TIMER_STARTED, 100.0, {"seq": 4, "duration": 5.0, "fire_at": 105.0}))
    rows.append((E.ACTIVITY_STARTED, 100.5, {"seq": 2, "attempt": 1}))
    rows.append((E.ACTIVITY_STARTED, 100.5, {"seq": 1, "attempt": 1}))
    rows.append((E.ACTIVITY_COMPLETED, 101.0, {"seq": 1, "attempt": 1, "result": None}))
    work = pending_work(history(*rows))
    assert sorted(work.activities) == [2, 3]
    assert work.activities[2].started and not work.activities[3].started
    assert work.timers == {4: 105.0}
    assert not work.closed
