"""Executor contract, updates (issue 17 item 2): a validator that may reject (nothing recorded), a handler
that runs as workflow code (recorded, replayed), its result or error for the caller, and update ids that
deduplicate retried calls."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.testing import replay
from beluga.workflow import WorkflowOptions
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import eventually

Ids = Callable[[], str]


def _start(ex: workflow.DurableExecutor, wid: str, start: int = 0) -> workflow.WorkflowHandle:
    handle = ex.execute(W.wf_counter, WorkflowOptions(id=wid, input=start))

    def handlers_set() -> bool:
        try:
            return ex.query(wid, "count") == start
        except workflow.QueryNotFound:
            return False

    eventually(handlers_set, 30, what="the workflow to set its handlers")
    return handle


def _updates(ex: workflow.DurableExecutor, wid: str) -> list[tuple[str, dict[str, object]]]:
    return [(ev.type, ev.attrs) for ev in ex.describe(wid).history if ev.type.startswith("update_")]


def test_an_accepted_update_returns_its_result_and_is_recorded(executor: workflow.DurableExecutor,
                                                               new_id: Ids) -> None:
    wid = new_id()
    handle = _start(executor, wid, 10)
    assert executor.update(wid, "add", 5, update_id="u1") == 15
    assert executor.query(wid, "count") == 15
    assert executor.update(wid, "finish") == 15
    assert handle.result(timeout=30) == 15
    recorded = _updates(executor, wid)
    assert recorded[:2] == [("update_accepted", {"update_id": "u1", "name": "add", "args": [5]}),
                            ("update_completed", {"update_id": "u1", "result": 15})]
    assert [t for t, _ in recorded] == ["update_accepted", "update_completed"] * 2
    replay(executor.describe(wid))  # the recorded history replays: the handlers run again, in place


def test_a_rejected_update_raises_and_records_nothing(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    _start(executor, wid)
    before = len(executor.describe(wid).history)
    with pytest.raises(workflow.ApplicationError, match="amount must be positive, got -1"):
        executor.update(wid, "add", -1)
    with pytest.raises(workflow.UpdateNotFound, match="no update handler 'nope'"):
        executor.update(wid, "nope")
    assert len(executor.describe(wid).history) == before
    assert executor.update(wid, "add", 2) == 2  # the run goes on
    executor.update(wid, "finish")


def test_a_handler_error_is_raised_to_the_caller_and_the_run_goes_on(executor: workflow.DurableExecutor,
                                                                     new_id: Ids) -> None:
    wid = new_id()
    handle = _start(executor, wid, 1)
    with pytest.raises(workflow.ApplicationError, match="the handler failed"):
        executor.update(wid, "fail", update_id="bad")
    (_, completed), = [u for u in _updates(executor, wid) if u[0] == "update_completed"]
    assert completed["update_id"] == "bad" and completed["error"]["message"] == "the handler failed"
    assert executor.update(wid, "finish") == 1
    assert handle.result(timeout=30) == 1


def test_a_handler_runs_activities_as_workflow_code(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = _start(executor, wid, 1)
    assert executor.update(wid, "add_slowly", 4, timeout=30) == 5
    assert executor.update(wid, "finish") == 5
    assert handle.result(timeout=30) == 5
    types = [ev.type for ev in executor.describe(wid).history]
    accepted = types.index("update_accepted")
    assert "activity_scheduled" in types[accepted:types.index("update_completed")]
    replay(executor.describe(wid))


def test_the_update_id_deduplicates_retried_calls(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    _start(executor, wid)
    assert executor.update(wid, "add", 3, update_id="same") == 3
    assert executor.update(wid, "add", 3, update_id="same") == 3  # the first outcome, not 6
    assert executor.query(wid, "count") == 3
    assert [a["update_id"] for t, a in _updates(executor, wid) if t == "update_accepted"] == ["same"]
    executor.update(wid, "finish")


def test_without_wait_the_call_returns_the_update_id_once_accepted(executor: workflow.DurableExecutor,
                                                                  new_id: Ids) -> None:
    wid = new_id()
    _start(executor, wid)
    update_id = executor.update(wid, "add", 7, wait=False)
    assert isinstance(update_id, str)
    assert executor.update(wid, "add", 7, update_id=update_id) == 7  # waits for that same update
    executor.update(wid, "finish")


def test_a_closed_run_takes_no_update(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = _start(executor, wid)
    executor.update(wid, "finish", update_id="last")
    handle.result(timeout=30)
    with pytest.raises(workflow.WorkflowNotRunning):
        executor.update(wid, "add", 1)
    assert executor.update(wid, "finish", update_id="last") == 0  # a retry of an update that ended: its outcome



def test_a_caller_stops_waiting_at_its_timeout_and_a_retry_gets_the_outcome(executor: workflow.DurableExecutor,
                                                                            new_id: Ids) -> None:
    """`held` waits until `finish`: its handler ends before the workflow function does."""
    wid = new_id()
    handle = _start(executor, wid, 4)
    with pytest.raises(TimeoutError):
        executor.update(wid, "held", update_id="held-1", timeout=0.5)
    assert executor.update(wid, "finish") == 4
    assert executor.update(wid, "held", update_id="held-1", timeout=30) == "released"
    assert handle.result(timeout=30) == 4
    types = [ev.type for ev in executor.describe(wid).history]
    assert types.count("update_completed") == 2 and types[-1] == "workflow_completed"
    replay(executor.describe(wid))


def test_an_update_in_flight_survives_a_new_executor(executor_factory: Backend, new_id: Ids) -> None:
    """The accepted update is in the history: the next executor (or worker) replays its handler to where it
    waited, and a retry by update id gets its outcome there."""
    first = executor_factory.executor()
    wid = new_id()
    _start(first, wid, 2)
    assert first.update(wid, "held", update_id="held-2", wait=False) == "held-2"
    first.close()
    second = executor_factory.executor()
    assert second.update(wid, "finish", timeout=30) == 2
    assert second.update(wid, "held", update_id="held-2", timeout=30) == "released"
    assert second.get_handle(wid).result(timeout=30) == 2
    assert [a["update_id"] for t, a in _updates(second, wid) if t == "update_accepted"][0] == "held-2"
