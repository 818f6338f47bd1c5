"""Priorities on every executor with fleet-wide limits (not Temporal, which has none per activity): the
attempts waiting for a concurrency permit take it by priority, a call's own or its run's
(beluga/core/priority.py), and every one of them runs. The order is read from the starts the activity
noted itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from beluga import workflow
from beluga.workflow import WorkflowOptions
from tests.executors import workflows as W
from tests.executors.helpers import eventually

Ids = Callable[[], str]
NO_LIMITS_ON_TEMPORAL = ("Temporal has no fleet-wide limit per activity: rate limits are per task queue and "
                         "concurrency per worker (docs/temporal.md)")


def started(key: str) -> list[str]:
    return [c["tag"] for c in sorted(W.calls(key), key=lambda c: c["started"])]


@pytest.mark.not_temporal(NO_LIMITS_ON_TEMPORAL)
def test_waiting_calls_take_a_freed_permit_by_priority(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """Scheduled at once behind a call holding the only permit, in the order low, low, default, high, high:
    they start high first, then the default, then low; all complete."""
    wid = new_id()
    calls = [["low1", 5], ["low2", 5], ["mid", None], ["high1", 1], ["high2", 1]]
    spec: dict[str, Any] = {"key": wid, "hold": 1.0, "seconds": 0.05, "calls": calls}
    result = executor.execute(W.wf_prioritized, WorkflowOptions(id=wid, input=spec)).result(timeout=60)
    assert result == ["first", "low1", "low2", "mid", "high1", "high2"]
    order = started(wid)
    assert order[0] == "first"
    assert set(order[1:3]) == {"high1", "high2"} and order[3] == "mid" and set(order[4:]) == {"low1", "low2"}, order
    history = executor.describe(wid).history
    assert not [ev for ev in history if ev.type == "activity_failed"]
    assert {ev.attrs["why"] for ev in history if ev.type == "activity_waiting"} == {"concurrency"}


@pytest.mark.not_temporal(NO_LIMITS_ON_TEMPORAL)
def test_a_runs_priority_is_its_calls(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """Two runs wait behind a call holding the only permit: the priority-5 run started first, the
    priority-1 run second; each calls one activity after another. The priority-1 run's calls all start
    before the priority-5 run's first (each of its next calls begins to wait well within the aging)."""
    key = new_id()
    blocker = executor.execute(W.wf_prioritized, WorkflowOptions(
        id=f"{key}-block", input={"key": key, "hold": 3.0, "seconds": 0.05, "calls": []}))
    eventually(lambda: started(key), timeout=30, what="the blocking call to start")
    chain = {"key": key, "n": 3, "seconds": 0.05}
    low = executor.execute(W.wf_prioritized_chain, WorkflowOptions(id=f"{key}-low", input={**chain, "tag": "a"},
                                                                   priority=5))
    high = executor.execute(W.wf_prioritized_chain, WorkflowOptions(id=f"{key}-high", input={**chain, "tag": "b"},
                                                                    priority=1))
    assert high.result(timeout=60) == ["b0", "b1", "b2"] and low.result(timeout=60) == ["a0", "a1", "a2"]
    blocker.result(timeout=60)
    assert started(key) == ["first", "b0", "b1", "b2", "a0", "a1", "a2"]
    assert executor.describe(f"{key}-low").history[0].attrs["priority"] == 5


def test_a_priority_out_of_range_is_refused(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    with pytest.raises(ValueError, match="from 1 \\(highest\\) to 5"):
        executor.execute(W.wf_prioritized_chain, WorkflowOptions(id=new_id(), input={}, priority=0))


def test_a_run_with_a_priority_completes_everywhere(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """On Temporal too: the priority is passed as Temporal's own priority key, on the run and its calls."""
    wid = new_id()
    spec = {"key": wid, "n": 2, "seconds": 0.0, "tag": "c"}
    assert executor.execute(W.wf_prioritized_chain, WorkflowOptions(id=wid, input=spec, priority=2)
                            ).result(timeout=60) == ["c0", "c1"]
    assert executor.describe(wid).history[0].attrs["priority"] == 2
