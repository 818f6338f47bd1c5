"""Executor contract, `async def` activities: they run on an event loop, many attempts in flight, with
`activity_info()` and heartbeats inside the coroutine, and their coroutine is cancelled when the attempt
times out or its run is cancelled (the activities note what they saw: `W.calls`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.workflow import WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import eventually

Ids = Callable[[], str]


def _events(key: str, event: str) -> list[dict]:
    return [c for c in W.calls(key) if c.get("event") == event]


def test_async_activity_results_and_info(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    result = executor.execute(W.wf_async, WorkflowOptions(id=wid, input={"n": 20, "seconds": 0.05})).result(timeout=15)
    assert result == [{"value": 2 * i, "attempt": 1, "workflow_id": wid} for i in range(20)]


def test_async_heartbeat_timeout_cancels_the_coroutine_and_details_reach_the_next_attempt(
        executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    spec = {"key": wid, "hang": 30.0, "heartbeat_timeout": 1.0}
    result = executor.execute(W.wf_async_heartbeat, WorkflowOptions(id=wid, input=spec)).result(timeout=15)
    assert result == {"attempt": 2, "details": {"done": 2}}
    attempts = [(c["attempt"], c["details"]) for c in W.calls(wid) if "details" in c]
    assert attempts == [(1, None), (2, {"done": 2})]
    # the silent attempt's coroutine was cancelled, not left to hang for 30 s
    assert eventually(lambda: _events(wid, "cancelled"), timeout=10, what="attempt 1 cancelled")[0]["attempt"] == 1


def test_async_timeout_cancels_the_coroutine(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    spec = {"key": wid, "seconds": 30.0, "timeout": 1.0}
    result = executor.execute(W.wf_async_timeout, WorkflowOptions(id=wid, input=spec)).result(timeout=15)
    assert result["error"] == "TimeoutError"
    eventually(lambda: _events(wid, "cancelled"), timeout=10, what="the timed-out coroutine cancelled")
    assert not _events(wid, "finished")


def test_run_cancel_cancels_the_coroutine(executor_factory: Backend, new_id: Ids) -> None:
    executor = executor_factory.executor()
    wid = new_id()
    spec = {"key": wid, "seconds": 30.0, "heartbeat_timeout": 2.0}
    handle = executor.execute(W.wf_async_cancelled, WorkflowOptions(id=wid, input=spec))
    eventually(lambda: _events(wid, "started"), timeout=10, what="the attempt started")
    executor.cancel(wid)
    with pytest.raises(workflow.WorkflowCancelled):
        handle.result(timeout=15)
    assert executor.describe(wid).status is WorkflowStatus.CANCELED
    eventually(lambda: _events(wid, "cancelled"), timeout=10, what="the run's attempt cancelled")
    assert not _events(wid, "finished")
