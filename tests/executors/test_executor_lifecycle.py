"""Executor contract, runs: execute, signal, query, cancel, handles, results and timeouts (API.md,
"Executors"). Every test runs against every backend of `conftest.BACKENDS`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.workflow import Signal, WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import eventually, wait_for_event
from tests.timing import bounded_by

Ids = Callable[[], str]


# --- execute ------------------------------------------------------------------------------------------------
def test_execute_returns_a_handle_and_the_result(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_echo, WorkflowOptions(id=wid, input={"order": "ORD-1", "qty": 2}))
    assert handle.id == wid and handle.run_id
    assert handle.result(timeout=5) == {"order": "ORD-1", "qty": 2}
    assert handle.status() is WorkflowStatus.COMPLETED
    state = executor.describe(wid)
    assert (state.workflow_id, state.run_id, state.workflow_type) == (wid, handle.run_id, "wf_echo")
    assert state.input == {"order": "ORD-1", "qty": 2} and state.result == {"order": "ORD-1", "qty": 2}
    assert state.created_at <= state.updated_at
    types = [ev.type for ev in state.history]
    assert types[0] == "workflow_started" and types[-1] == "workflow_completed"
    assert {"activity_started", "activity_completed"} <= set(types)
    assert [ev.id for ev in state.history] == list(range(1, len(types) + 1))


def test_execute_by_registered_name(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    assert executor.execute("wf_by_name", WorkflowOptions(id=new_id(), input=7)).result(timeout=5) == 7


def test_execute_without_input_or_options(executor: workflow.DurableExecutor) -> None:
    handle = executor.execute(W.wf_no_input)
    assert handle.id  # a fresh uuid
    assert handle.result(timeout=5) == "no input needed"


def test_execute_without_id_uses_a_new_uuid_each_time(executor: workflow.DurableExecutor) -> None:
    a = executor.execute(W.wf_no_input, WorkflowOptions())
    b = executor.execute(W.wf_no_input, WorkflowOptions())
    assert a.id != b.id and len(a.id) == 36


def test_same_id_while_open_is_already_started(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    first = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid))
    with pytest.raises(workflow.WorkflowAlreadyStarted, match=wid):
        executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=1))
    assert executor.describe(wid).run_id == first.run_id  # the open run is untouched
    executor.signal(wid, Signal("go", "done"))
    assert first.result(timeout=5) == "done"


def test_same_id_after_close_starts_a_new_run(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    first = executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=1))
    assert first.result(timeout=5) == 1
    second = executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=2))
    assert second.run_id != first.run_id
    assert second.result(timeout=5) == 2


# --- signals ------------------------------------------------------------------------------------------------
def test_signal_wakes_a_parked_workflow(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid, input="approve"))
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.1)
    assert handle.status() is WorkflowStatus.RUNNING
    executor.signal(wid, Signal(name="approve", payload={"by": "ana"}, sender_id="ana@example.com"))
    assert handle.result(timeout=5) == {"by": "ana"}
    (received,) = [ev for ev in executor.describe(wid).history if ev.type == "signal_received"]
    assert received.attrs["name"] == "approve" and received.attrs["sender_id"] == "ana@example.com"


def test_signals_sent_early_are_buffered_in_order(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_collect, WorkflowOptions(id=wid, input=5))
    executor.signal(wid, Signal("other", "ignored"))
    for i in range(5):  # most arrive before the workflow first asks for one
        executor.signal(wid, Signal("msg", i))
    assert handle.result(timeout=5) == [0, 1, 2, 3, 4]


def test_signal_unknown_id_is_not_found(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    with pytest.raises(workflow.WorkflowNotFound):
        executor.signal(new_id(), Signal("go"))


def test_signal_closed_run_is_not_running(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=1)).result(timeout=5)
    before = len(executor.describe(wid).history)
    with pytest.raises(workflow.WorkflowNotRunning):
        executor.signal(wid, Signal("go"))
    assert len(executor.describe(wid).history) == before


# --- queries ------------------------------------------------------------------------------------------------
def test_builtin_queries_on_open_and_closed_runs(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid))
    assert executor.query(wid, "status") == WorkflowStatus.RUNNING == "running"
    assert executor.query(wid, "result") is None
    executor.signal(wid, Signal("go", [1, 2]))
    handle.result(timeout=5)
    assert executor.query(wid, "status") is WorkflowStatus.COMPLETED
    assert executor.query(wid, "result") == [1, 2]


def test_builtin_queries_on_failed_run(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.WorkflowFailed):
        executor.execute(W.wf_fail, WorkflowOptions(id=wid, input="no")).result(timeout=5)
    assert executor.query(wid, "status") is WorkflowStatus.FAILED
    assert executor.query(wid, "result") is None


def test_user_query_handlers(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_progress, WorkflowOptions(id=wid, input=10))
    eventually(lambda: executor.query(wid, "progress")["step"] == "waiting")
    assert executor.query(wid, "progress") == {"step": "waiting", "count": 10}
    assert executor.query(wid, "add", 1, 2) == 13
    executor.signal(wid, Signal("go", "ok"))
    assert handle.result(timeout=5) == "ok"
    assert executor.query(wid, "progress") == {"step": "done", "count": 10}  # a closed run answers too


def test_unknown_query_type(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_progress, WorkflowOptions(id=wid, input=0))
    with pytest.raises(workflow.QueryNotFound, match="nope"):
        executor.query(wid, "nope")
    # The failed query did not disturb the run, not even one started a moment before.
    executor.signal(wid, Signal("go", "still fine"))
    assert handle.result(timeout=5) == "still fine"
    with pytest.raises(workflow.QueryNotFound):
        executor.query(wid, "nope")


def test_query_handler_that_raises_fails_only_the_query(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_progress, WorkflowOptions(id=wid, input=0))
    with pytest.raises((ZeroDivisionError, workflow.RemoteError)) as raised:  # remote: rebuilt by type name
        executor.query(wid, "broken")
    assert "ZeroDivisionError" in (raised.type.__name__, getattr(raised.value, "type", ""))
    executor.signal(wid, Signal("go", 1))
    assert handle.result(timeout=5) == 1


def test_query_unknown_id(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    for query_type in ("status", "result", "progress"):
        with pytest.raises(workflow.WorkflowNotFound):
            executor.query(new_id(), query_type)


# --- cancellation -------------------------------------------------------------------------------------------
def test_cancel_runs_cleanup_then_ends_canceled(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_cancellable, WorkflowOptions(id=wid, input=wid))
    executor.cancel(wid)
    with pytest.raises(workflow.WorkflowCancelled):
        handle.result(timeout=5)
    assert handle.status() is WorkflowStatus.CANCELED
    assert W.calls(wid) == [{"event": "cleanup"}]
    types = [ev.type for ev in executor.describe(wid).history]
    assert types[-1] == "workflow_canceled"
    assert types.index("workflow_cancel_requested") < types.index("activity_completed")
    with pytest.raises(workflow.WorkflowNotRunning):
        executor.cancel(wid)


def test_cancel_unknown_id(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    with pytest.raises(workflow.WorkflowNotFound):
        executor.cancel(new_id())


def test_cancel_a_sleeping_workflow(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_sleep, WorkflowOptions(id=wid, input=30))
    wait_for_event(executor, wid, "timer_started")
    executor.cancel(wid)
    with pytest.raises(workflow.WorkflowCancelled):
        handle.result(timeout=5)


def test_terminate_closes_at_once_without_cleanup(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_cancellable, WorkflowOptions(id=wid, input=wid))
    executor.terminate(wid, "stuck order, closed by ops")
    with pytest.raises(workflow.WorkflowCancelled):
        handle.result(timeout=5)
    state = executor.describe(wid)
    assert state.status is WorkflowStatus.CANCELED
    assert state.error["type"] == "Terminated" and "closed by ops" in state.error["message"]
    assert state.history[-1].type == "workflow_terminated"
    assert "workflow_cancel_requested" not in [ev.type for ev in state.history]  # no cleanup was asked for
    assert W.calls(wid) == []
    with pytest.raises(workflow.WorkflowNotRunning):
        executor.terminate(wid)
    with pytest.raises(workflow.WorkflowNotFound):
        executor.terminate(new_id())


def test_a_signal_racing_the_close_is_recorded_or_refused(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """Two signals sent back to back to a run that closes on the first: the second is either in the
    history (before the close) or refused with WorkflowNotRunning, never accepted and lost."""
    for _ in range(5):
        wid = new_id()
        handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid, input="go"))
        accepted = []
        for payload in ("first", "second"):
            try:
                executor.signal(wid, Signal("go", payload))
                accepted.append(payload)
            except workflow.WorkflowNotRunning:
                pass
        assert handle.result(timeout=5) == "first"
        recorded = [ev.attrs["payload"] for ev in executor.describe(wid).history if ev.type == "signal_received"]
        assert recorded == accepted
        assert executor.describe(wid).history[-1].type == "workflow_completed"


# --- handles ------------------------------------------------------------------------------------------------
def test_get_handle_from_a_second_executor(executor_factory: Backend, new_id: Ids) -> None:
    first = executor_factory.executor()
    wid = new_id()
    started = first.execute(W.wf_wait_signal, WorkflowOptions(id=wid))
    second = executor_factory.executor()
    handle = second.get_handle(wid)
    assert (handle.id, handle.run_id) == (wid, started.run_id)
    assert handle.status() is WorkflowStatus.RUNNING
    first.signal(wid, Signal("go", "from the first"))
    assert handle.result(timeout=5) == "from the first"
    assert second.query(wid, "status") is WorkflowStatus.COMPLETED


def test_get_handle_unknown_id(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    with pytest.raises(workflow.WorkflowNotFound):
        executor.get_handle(new_id())


def test_describe_unknown_id(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(new_id())


def test_result_timeout(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=new_id()))
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.2)
    assert 0.15 <= time.monotonic() - start < bounded_by(0.2)  # it gave up at its timeout: the run never ends
    assert handle.status() is WorkflowStatus.RUNNING


def test_result_raises_workflow_failed_with_cause(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_fail, WorkflowOptions(id=wid, input="order rejected"))
    with pytest.raises(workflow.WorkflowFailed) as info:
        handle.result(timeout=5)
    cause = info.value.cause
    assert isinstance(cause, workflow.ApplicationError)
    assert "order rejected" in str(info.value) and "order rejected" in str(cause)
    assert info.value.__cause__ is cause
    assert handle.status() is WorkflowStatus.FAILED
    state = executor.describe(wid)
    assert state.error["type"] == "ApplicationError" and state.error["message"] == "order rejected"
    assert state.history[-1].type == "workflow_failed"


def test_workflow_exception_keeps_its_type_and_traceback(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    handle = executor.execute(W.wf_crash, WorkflowOptions(id=new_id()))
    with pytest.raises(workflow.WorkflowFailed) as info:
        handle.result(timeout=5)
    cause = info.value.cause
    assert getattr(cause, "type", None) == "ZeroDivisionError"
    assert "division by zero in workflow code" in str(cause)
    assert "wf_crash" in getattr(cause, "traceback", "")


def test_workflow_timeout_ends_timed_out(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_sleep, WorkflowOptions(id=wid, input=30, timeout=0.2))
    with pytest.raises(workflow.WorkflowFailed, match="timed out") as info:
        handle.result(timeout=bounded_by(0.2))
    assert isinstance(info.value.cause, workflow.WorkflowError)
    assert handle.status() is WorkflowStatus.TIMED_OUT
    assert executor.query(wid, "status") is WorkflowStatus.TIMED_OUT
    history = executor.describe(wid).history
    assert history[-1].type == "workflow_timed_out"
    # ended by its timeout, not by its 30 s sleep: read on the run's own recorded times
    assert history[-1].timestamp - history[0].timestamp < bounded_by(0.2)
    with pytest.raises(workflow.WorkflowNotRunning):
        executor.signal(wid, Signal("go"))


def test_workflow_timeout_does_not_cut_a_quick_run(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    # a timeout that leaves a loaded machine time to run one activity (0.2 s did not, on Temporal)
    timeout = 2.0
    handle = executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=1, timeout=timeout))
    assert handle.result(timeout=5) == 1
    history = executor.describe(wid).history
    assert history[-1].type == "workflow_completed"
    # then the timeout passes, and a few rounds of the fleet's deadline checks (every 0.2 s): nothing
    # cuts the closed run
    time.sleep(max(0.0, history[0].timestamp + timeout + 0.6 - time.time()))
    assert handle.status() is WorkflowStatus.COMPLETED
    assert executor.describe(wid).history[-1].type == "workflow_completed"


def test_timeout_accepts_timedelta(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    from datetime import timedelta

    handle = executor.execute(W.wf_sleep, WorkflowOptions(id=new_id(), input=30, timeout=timedelta(seconds=0.1)))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=5)
    assert handle.status() is WorkflowStatus.TIMED_OUT


def test_executor_is_a_context_manager(executor_factory: Backend, new_id: Ids) -> None:
    with executor_factory.executor() as ex:
        assert ex.execute(W.wf_echo, WorkflowOptions(id=new_id(), input="x")).result(timeout=5) == "x"
