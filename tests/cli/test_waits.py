"""What `beluga show` and the console say of an attempt that waits for its activity's limit (a permit),
read from the history alone."""

from __future__ import annotations

import time

from beluga.cli import render
from beluga.cli.runs import waiting
from beluga.core.records import Event, EventType, WorkflowState

E = EventType


def test_an_attempt_waiting_for_its_limit_is_shown_as_such() -> None:
    now = time.time()
    until = now + 30
    history = (Event(1, E.WORKFLOW_STARTED, now, {"workflow_type": "not_registered_here", "input": None}),
               Event(2, E.ACTIVITY_SCHEDULED, now, {"seq": 1, "name": "call_llm", "input": None}),
               Event(3, E.ACTIVITY_WAITING, now, {"seq": 1, "attempt": 1, "until": until,
                                                   "limit": "openai", "why": "rate"}))
    state = WorkflowState("w", "r", "not_registered_here", history=history)
    lines = render.waiting_lines(waiting(state))
    assert lines[0].startswith("  activity call_llm (seq 1): attempt 1 waiting for its rate limit 'openai' "
                               "(not a failure), due ")
    assert "waits for its rate limit 'openai' until" in render.timeline(history)[-1]
    started = history + (Event(4, E.ACTIVITY_STARTED, now + 1, {"seq": 1, "attempt": 1}),)
    assert "running" in render.waiting_lines(waiting(WorkflowState("w", "r", "x", history=started)))[0]
