"""A run whose code changed under it: the default executor leaves it untouched and reports it, and
code that matches its history again carries it on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.stores import SQLiteStore
from tests.executors import workflows as W
from tests.executors.helpers import Recorder, eventually, wait_for_event


def changed_versioned(ctx: workflow.WorkflowContext, value: Any) -> Any:
    """wf_versioned as someone edited it: a timer where the history has the `echo` activity."""
    ctx.sleep(1)
    payload = ctx.receive_signal("go").receive()
    return [value, payload]


def changed_versioned_timer(ctx: workflow.WorkflowContext, seconds: float) -> Any:
    """wf_versioned_timer with its first activity renamed."""
    ctx.execute_activity("add_one", 1)
    ctx.sleep(seconds)
    return "slept"


def changed_registry() -> workflow.Registry:
    reg = workflow.Registry()
    reg.add_workflow(changed_versioned, name="wf_versioned")
    reg.add_workflow(changed_versioned_timer, name="wf_versioned_timer")
    reg.add_activity(W.echo)
    reg.add_activity(W.add_one)
    return reg


@pytest.fixture
def open_executor(tmp_path: Path) -> Iterator[Any]:
    made: list[workflow.DurableExecutor] = []
    db = tmp_path / "nd.db"

    def make(hooks: workflow.Hooks | None = None, **extra: Any) -> workflow.DurableExecutor:
        ex = workflow.new("default", workflow.Config(store=SQLiteStore(db), hooks=hooks, extra=extra))
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


def park_then_diverge(open_executor: Any, wid: str) -> tuple[workflow.WorkflowState, Recorder, Any]:
    """Executor A runs wf_versioned to its signal wait and closes; executor B, with changed code,
    is asked a query, which needs a replay, which diverges. Returns the parked state, B's hooks and B."""
    a = open_executor()
    a.execute(W.wf_versioned, workflow.WorkflowOptions(id=wid, input=1))
    parked = wait_for_event(a, wid, "activity_completed")
    a.close()

    rec = Recorder()
    b = open_executor(hooks=rec.hooks("on_workflow_fail"), registry=changed_registry())
    assert b.query(wid, "status") is workflow.WorkflowStatus.RUNNING  # built-in: read from the store
    with pytest.raises(workflow.NonDeterminismError):
        b.query(wid, "anything")
    return parked, rec, b


def test_changed_code_leaves_the_run_untouched_and_reports_it(open_executor: Any) -> None:
    wid = "nd-query"
    parked, rec, b = park_then_diverge(open_executor, wid)
    state = eventually(lambda: (s := b.describe(wid)).error and s)
    assert state.status is workflow.WorkflowStatus.RUNNING
    assert state.history == parked.history  # nothing appended
    assert state.error["type"] == "NonDeterminismError"
    assert ("event #2 records activity 'echo' (seq 1), but the code asked for timer of 1s (seq 1)"
            in state.error["message"])
    (reported,) = eventually(lambda: rec.of(wid, "on_workflow_fail"))
    assert isinstance(reported, workflow.NonDeterminismError)
    with pytest.raises(TimeoutError):
        b.get_handle(wid).result(timeout=0.1)
    b.close()

    c = open_executor()  # the original code again
    c.signal(wid, workflow.Signal("go", "after the fix"))
    assert c.get_handle(wid).result(timeout=5) == [1, "after the fix", 2]


def test_inputs_that_arrive_while_stuck_are_kept_for_the_fixed_code(open_executor: Any) -> None:
    wid = "nd-signal"
    parked, _, b = park_then_diverge(open_executor, wid)
    b.signal(wid, workflow.Signal("go", "kept while stuck"))  # recorded; nothing runs
    after = b.describe(wid)
    assert [ev.type for ev in after.history] == [ev.type for ev in parked.history] + ["signal_received"]
    assert after.status is workflow.WorkflowStatus.RUNNING
    b.close()

    c = open_executor()  # recovery replays the once-stuck run, which consumes the kept signal
    assert c.get_handle(wid).result(timeout=5) == [1, "kept while stuck", 2]
    assert c.describe(wid).history[:len(after.history)] == after.history


def stuck_on_a_fired_timer(open_executor: Any, wid: str) -> None:
    """Run wf_versioned_timer to its timer, then let changed code find the timer fired and get stuck."""
    a = open_executor()
    a.execute(W.wf_versioned_timer, workflow.WorkflowOptions(id=wid, input=0.3))
    wait_for_event(a, wid, "timer_started")
    a.close()

    rec = Recorder()
    b = open_executor(hooks=rec.hooks("on_workflow_fail"), registry=changed_registry())
    eventually(lambda: rec.of(wid, "on_workflow_fail"))  # the timer fired and the replay diverged
    stuck = wait_for_event(b, wid, "timer_fired")
    assert stuck.status is workflow.WorkflowStatus.RUNNING
    assert stuck.history[-1].type == "timer_fired"  # kept, with nothing after it
    b.close()


def test_fixed_code_resumes_a_run_whose_timer_fired_while_stuck(open_executor: Any) -> None:
    """Nothing will ever signal this run: recovery itself must pick it up once the code matches."""
    stuck_on_a_fired_timer(open_executor, "nd-timer")
    c = open_executor()
    assert c.get_handle("nd-timer").result(timeout=5) == "slept"


def test_resumed_run_no_longer_reports_the_divergence(open_executor: Any) -> None:
    stuck_on_a_fired_timer(open_executor, "nd-timer-error")
    c = open_executor()
    c.get_handle("nd-timer-error").result(timeout=5)
    assert c.describe("nd-timer-error").error is None


def test_a_stuck_run_reset_to_last_good_goes_on_with_the_new_code(open_executor: Any) -> None:
    """The bad deploy on Beluga is often a mismatch, not a failure: `last-good` goes back before the event
    where the code diverged (kept in the stuck error's `position`) and the new code takes it from there."""
    _, _, b = park_then_diverge(open_executor, "nd-reset")
    stuck = eventually(lambda: (s := b.describe("nd-reset")).error and s)
    assert stuck.error["position"] == 2  # the echo activity the changed code no longer asks for
    done = b.reset("nd-reset", "last-good")
    assert done.point == 1 and done.terminated
    b.signal("nd-reset", workflow.Signal("go", "after the reset"))
    assert b.get_handle("nd-reset").result(timeout=10) == [1, "after the reset"]
    kept = b.describe("nd-reset/runs/1")
    assert kept.status is workflow.WorkflowStatus.CANCELED and kept.history[-1].type == "workflow_terminated"
    assert done.dropped_events == len(kept.history) - 1  # all but the start, its termination included
