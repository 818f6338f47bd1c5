"""Executor contract, observing: the seven hooks, `compose_hooks`, middleware and `with_hooks`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from beluga import workflow
from beluga.workflow import Signal, WorkflowOptions
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import HOOK_NAMES, Recorder, eventually

pytestmark = pytest.mark.in_process  # hooks fire in the process that runs the engine

Ids = Callable[[], str]


def test_all_seven_hooks_fire(executor_factory: Backend, new_id: Ids) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks())
    ok, bad = new_id(), new_id()
    spec = {"key": ok, "fail_times": 1}
    good = ex.execute(W.wf_hooks, WorkflowOptions(id=ok, input=spec))
    failing = ex.execute(W.wf_hooks, WorkflowOptions(id=bad, input={"key": bad}))
    eventually(lambda: W.calls(ok)[1:] and W.calls(bad))
    ex.signal(ok, Signal("go", "fine"))
    ex.signal(bad, Signal("go", "fail"))
    assert good.result(timeout=5) == "fine"
    with pytest.raises(workflow.WorkflowFailed):
        failing.result(timeout=5)
    eventually(lambda: rec.of(ok, "on_workflow_complete") and rec.of(bad, "on_workflow_fail"))

    assert rec.of(ok, "on_workflow_start") == [spec]
    assert rec.of(ok, "on_activity_start") == [spec, spec]  # the failed attempt and the retry
    assert [e["type"] for e in rec.of(ok, "on_retry")] == ["ValueError"]
    assert rec.of(ok, "on_activity_complete") == [{"attempt": 2, "idempotency_key": f"{ok}:{good.run_id}:1"}]
    (sig,) = rec.of(ok, "on_signal")
    assert isinstance(sig, workflow.Signal) and (sig.name, sig.payload) == ("go", "fine")
    assert sig.sent_at is not None  # filled in when recorded
    assert rec.of(ok, "on_workflow_complete") == ["fine"]
    assert rec.of(ok, "on_workflow_fail") == []
    (error,) = rec.of(bad, "on_workflow_fail")
    assert error["type"] == "ApplicationError" and error["message"] == "asked to fail"
    assert rec.of(bad, "on_workflow_complete") == []
    fired = {name for name, _, _ in rec.calls}
    assert fired == set(HOOK_NAMES)


def test_hook_order_for_one_run(executor_factory: Backend, new_id: Ids) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks())
    wid = new_id()
    ex.execute(W.wf_echo, WorkflowOptions(id=wid, input=1)).result(timeout=5)
    eventually(lambda: rec.of(wid, "on_workflow_complete"))
    assert [name for name, _ in rec.of(wid)] == ["on_workflow_start", "on_activity_start",
                                                "on_activity_complete", "on_workflow_complete"]
    signalled = new_id()
    handle = ex.execute(W.wf_wait_signal, WorkflowOptions(id=signalled))
    ex.signal(signalled, Signal("go", 1))
    handle.result(timeout=5)
    eventually(lambda: rec.of(signalled, "on_workflow_complete"))
    assert [name for name, _ in rec.of(signalled)] == ["on_workflow_start", "on_signal", "on_workflow_complete"]


@pytest.mark.not_temporal("a run that Temporal times out runs no more workflow code, so no "
                          "on_workflow_fail hook can fire for it")
def test_cancel_and_timeout_are_reported_as_failures(executor_factory: Backend, new_id: Ids) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks("on_workflow_fail", "on_workflow_complete"))
    cancelled, timed_out = new_id(), new_id()
    ex.execute(W.wf_wait_signal, WorkflowOptions(id=cancelled))
    ex.cancel(cancelled)
    ex.execute(W.wf_sleep, WorkflowOptions(id=timed_out, input=30, timeout=0.05))
    eventually(lambda: rec.of(cancelled, "on_workflow_fail") and rec.of(timed_out, "on_workflow_fail"))
    assert rec.of(timed_out, "on_workflow_fail")[0]["type"] == "TimeoutError"
    assert rec.of(cancelled, "on_workflow_complete") == rec.of(timed_out, "on_workflow_complete") == []


def _raising(name: str) -> Callable[[str, Any], None]:
    def hook(workflow_id: str, payload: Any) -> None:
        raise RuntimeError(f"{name} is broken")

    return hook


def test_a_raising_hook_is_logged_not_fatal(executor_factory: Backend, new_id: Ids,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="beluga")
    ex = executor_factory.executor(hooks=workflow.Hooks(**{n: _raising(n) for n in HOOK_NAMES}))
    wid = new_id()
    handle = ex.execute(W.wf_hooks, WorkflowOptions(id=wid, input={"key": wid, "fail_times": 1}))
    eventually(lambda: len(W.calls(wid)) == 2)
    ex.signal(wid, Signal("go", "still works"))
    assert handle.result(timeout=5) == "still works"
    expected = {f"hook {n} raised" for n in HOOK_NAMES if n != "on_workflow_fail"}
    eventually(lambda: all(any(e in r.getMessage() for r in caplog.records) for e in expected))
    assert any("is broken" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_compose_hooks_calls_each_in_order_despite_failures(executor_factory: Backend, new_id: Ids) -> None:
    order: list[str] = []
    first = workflow.Hooks(on_workflow_start=lambda wid, p: (order.append("first"), 1 / 0),
                           on_workflow_complete=lambda wid, p: order.append("first-complete"))
    second = workflow.Hooks(on_workflow_start=lambda wid, p: order.append("second"))
    ex = executor_factory.executor(hooks=workflow.compose_hooks(first, None, second))
    ex.execute(W.wf_no_input, WorkflowOptions(id=new_id())).result(timeout=5)
    eventually(lambda: "first-complete" in order)
    assert order == ["first", "second", "first-complete"]


def test_compose_hooks_of_nothing() -> None:
    composed = workflow.compose_hooks()
    assert all(getattr(composed, n) is None for n in HOOK_NAMES)


class Tagging(workflow.DurableExecutor):
    """A user-written middleware: logs each call, then forwards it."""

    def __init__(self, inner: workflow.DurableExecutor, tag: str, log: list[str]) -> None:
        self.inner, self.tag, self.log = inner, tag, log

    def execute(self, wf: Any, options: WorkflowOptions | None = None) -> workflow.WorkflowHandle:
        self.log.append(f"{self.tag}:execute")
        handle = self.inner.execute(wf, options)
        return workflow.WorkflowHandle(self, handle.id, handle.run_id)

    def signal(self, workflow_id: str, signal: Signal) -> None:
        self.log.append(f"{self.tag}:signal")
        self.inner.signal(workflow_id, signal)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        self.log.append(f"{self.tag}:query")
        return self.inner.query(workflow_id, query_type, *args)

    def cancel(self, workflow_id: str) -> None:
        self.log.append(f"{self.tag}:cancel")
        self.inner.cancel(workflow_id)

    def describe(self, workflow_id: str) -> workflow.WorkflowState:
        return self.inner.describe(workflow_id)

    def wait_closed(self, workflow_id: str, timeout: float | None) -> workflow.WorkflowState:
        return self.inner.wait_closed(workflow_id, timeout)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def tagging(tag: str, log: list[str]) -> workflow.Middleware:
    return lambda ex: Tagging(ex, tag, log)


def test_apply_middleware_first_is_outermost(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    log: list[str] = []
    ex = workflow.apply_middleware(executor, tagging("outer", log), tagging("inner", log))
    wid = new_id()
    handle = ex.execute(W.wf_wait_signal, WorkflowOptions(id=wid))
    ex.query(wid, "status")
    ex.signal(wid, Signal("go", 1))
    assert handle.result(timeout=5) == 1
    wid2 = new_id()
    ex.execute(W.wf_wait_signal, WorkflowOptions(id=wid2))
    ex.cancel(wid2)
    assert log == ["outer:execute", "inner:execute", "outer:query", "inner:query", "outer:signal",
                   "inner:signal", "outer:execute", "inner:execute", "outer:cancel", "inner:cancel"]
    assert workflow.apply_middleware(executor) is executor


@pytest.mark.parametrize("position", ["innermost", "outermost"])
def test_with_hooks_adds_to_the_executors_own(executor_factory: Backend, new_id: Ids, position: str) -> None:
    own, added = Recorder(), Recorder()
    base = executor_factory.executor(hooks=own.hooks())
    log: list[str] = []
    chain = [tagging("t", log), workflow.with_hooks(added.hooks())]
    ex = workflow.apply_middleware(base, *(chain if position == "innermost" else reversed(chain)))
    wid = new_id()
    handle = ex.execute(W.wf_hooks, WorkflowOptions(id=wid, input={"key": wid, "fail_times": 1}))
    eventually(lambda: len(W.calls(wid)) == 2)
    ex.signal(wid, Signal("go", "ok"))
    assert handle.result(timeout=5) == "ok"
    eventually(lambda: added.of(wid, "on_workflow_complete"))
    assert {n for n, _ in added.of(wid)} == set(HOOK_NAMES) - {"on_workflow_fail"}
    eventually(lambda: own.of(wid, "on_workflow_complete"))
    assert [n for n, _ in own.of(wid)] == [n for n, _ in added.of(wid)]
    assert log == ["t:execute", "t:signal"]
