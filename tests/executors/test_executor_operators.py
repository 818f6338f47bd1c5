"""Who did what, and what a closing parent does to its children, on every executor: signals, cancels,
terminations and starts carry the caller's identity into the history and one INFO log line; a parent's
close applies each open child's parent-close policy (terminate by default, as Temporal)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.workflow import ParentClosePolicy, Signal, WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W
from tests.executors.helpers import eventually

Ids = Callable[[], str]


def _event(state: workflow.WorkflowState, event_type: str) -> workflow.Event:
    return next(ev for ev in state.history if ev.type == event_type)


def _audit_lines(caplog: pytest.LogCaptureFixture, workflow_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "beluga.audit" and workflow_id in r.getMessage()]


def test_identity_is_recorded_and_logged(executor: workflow.DurableExecutor, new_id: Ids,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="beluga.audit")
    signalled, cancelled, terminated = new_id(), new_id(), new_id()
    executor.execute(W.wf_wait_signal, WorkflowOptions(id=signalled, input="go", identity="dave@ops-1"))
    executor.signal(signalled, Signal("go", 1), identity="alice@ops-1")
    assert executor.get_handle(signalled).result(timeout=10) == 1
    executor.execute(W.wf_cancellable, WorkflowOptions(id=cancelled, input=cancelled))
    executor.cancel(cancelled, identity="bob@ops-2")
    executor.execute(W.wf_cancellable, WorkflowOptions(id=terminated, input=terminated))
    executor.terminate(terminated, "stuck", identity="carol@ops-3")
    for wid in (cancelled, terminated):
        with pytest.raises(workflow.WorkflowCancelled):
            executor.get_handle(wid).result(timeout=10)

    state = executor.describe(signalled)
    assert state.history[0].attrs["identity"] == "dave@ops-1"
    assert _event(state, "signal_received").attrs["identity"] == "alice@ops-1"
    assert _event(executor.describe(cancelled), "workflow_cancel_requested").attrs["identity"] == "bob@ops-2"
    ended = _event(executor.describe(terminated), "workflow_terminated")
    assert ended.attrs["identity"] == "carol@ops-3"
    assert _audit_lines(caplog, signalled) == [f"signalled workflow {signalled} by alice@ops-1: 'go'"]
    assert _audit_lines(caplog, cancelled) == [f"cancel requested for workflow {cancelled} by bob@ops-2"]
    assert _audit_lines(caplog, terminated) == [f"terminated workflow {terminated} by carol@ops-3: stuck"]


def test_a_call_without_identity_records_none(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid, input="go"))
    executor.signal(wid, Signal("go", 2))
    assert handle.result(timeout=10) == 2
    state = executor.describe(wid)
    assert "identity" not in state.history[0].attrs
    assert "identity" not in _event(state, "signal_received").attrs


def _started(executor: workflow.DurableExecutor, wid: str) -> None:
    def check() -> bool:
        try:
            return bool(executor.describe(wid).history)
        except workflow.WorkflowNotFound:
            return False

    eventually(check, 15, what=f"child {wid} to start")


def _closed(executor: workflow.DurableExecutor, wid: str) -> workflow.WorkflowState:
    return eventually(lambda: (lambda s: None if s.status.is_open else s)(executor.describe(wid)), 15)


def test_terminating_a_parent_applies_each_childs_policy(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    parent, killed, asked, left = new_id(), new_id(), new_id(), new_id()
    executor.execute(W.wf_parent_close, WorkflowOptions(id=parent, input=[
        [killed, ""], [asked, ParentClosePolicy.REQUEST_CANCEL.value], [left, "abandon"]]))
    for child in (killed, asked, left):
        _started(executor, child)
    executor.terminate(parent, "shutting down", identity="alice")

    terminated = _closed(executor, killed)  # the default policy: closed at once, no cleanup
    assert terminated.status is WorkflowStatus.CANCELED and terminated.error["type"] == "Terminated"
    assert terminated.history[-1].type == "workflow_terminated"
    assert W.calls(killed) == []
    cancelled = _closed(executor, asked)  # asked to cancel: its cleanup ran
    assert cancelled.status is WorkflowStatus.CANCELED
    assert "workflow_cancel_requested" in [ev.type for ev in cancelled.history]
    assert W.calls(asked) == [{"event": "cleanup"}]
    # abandoned: untouched (its policy, none, was applied with the others', which have been carried out)
    abandoned = executor.describe(left)
    assert abandoned.status is WorkflowStatus.RUNNING
    assert not {"workflow_cancel_requested", "workflow_terminated"} & {ev.type for ev in abandoned.history}
    executor.cancel(left)
    assert _closed(executor, left).status is WorkflowStatus.CANCELED


def test_a_parent_that_completes_terminates_its_open_children(executor: workflow.DurableExecutor,
                                                              new_id: Ids) -> None:
    parent, child = new_id(), new_id()
    handle = executor.execute(W.wf_parent_close, WorkflowOptions(id=parent, input=[[child, ""]]))
    _started(executor, child)
    executor.signal(parent, Signal("finish"))
    assert handle.result(timeout=10) == "parent done"
    state = _closed(executor, child)
    assert state.error["type"] == "Terminated" and state.history[-1].type == "workflow_terminated"
    assert _event(executor.describe(parent), "child_workflow_started").attrs["parent_close_policy"] == "terminate"
