"""Executor contract, bad input: every mistake is a typed error with a useful message, and nothing
half-done is left in the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from beluga import workflow
from beluga.workflow import Signal, WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W

Ids = Callable[[], str]
TOO_BIG = "x" * (2 * 1024 * 1024 + 1)  # just over the default 2 MiB payload limit


def test_unregistered_workflow_name(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.ConfigurationError, match="no workflow registered as 'tests_no_such_workflow'"):
        executor.execute("tests_no_such_workflow", WorkflowOptions(id=wid))
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(wid)


@pytest.mark.in_process  # the fleet waits for a worker with the code: tests/celery/test_fleet.py
def test_unregistered_activity_name_fails_the_run_clearly(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.WorkflowFailed) as info:
        executor.execute(W.wf_unknown_activity, WorkflowOptions(id=wid)).result(timeout=5)
    text = str(info.value.cause) + str(info.value.cause.__cause__)
    assert "no activity registered as 'tests_no_such_activity'" in text
    history = executor.describe(wid).history
    assert [ev.type for ev in history].count("activity_started") == 1  # not retried
    (failed,) = [ev.attrs for ev in history if ev.type == "activity_failed"]
    assert failed["error"]["type"] == "ConfigurationError" and failed["retry_in"] is None


@pytest.mark.parametrize("value", [object(), {"fn": len}, [lambda: 1]],
                         ids=["object", "function-in-dict", "lambda-in-list"])
def test_unserializable_input_stores_nothing(executor: workflow.DurableExecutor, new_id: Ids, value: Any) -> None:
    wid = new_id()
    with pytest.raises(workflow.SerializationError):
        executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=value))
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(wid)


def test_oversized_input_stores_nothing(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.SerializationError, match="exceeds"):
        executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=TOO_BIG))
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(wid)


@pytest.mark.parametrize("payload", [object(), TOO_BIG], ids=["unserializable", "oversized"])
def test_bad_signal_payload_records_nothing(executor: workflow.DurableExecutor, new_id: Ids, payload: Any) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid))
    before = len(executor.describe(wid).history)
    with pytest.raises(workflow.SerializationError):
        executor.signal(wid, Signal("go", payload))
    assert len(executor.describe(wid).history) == before
    executor.signal(wid, Signal("go", "good"))
    assert handle.result(timeout=5) == "good"


def test_unserializable_workflow_result_fails_the_run(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.WorkflowFailed) as info:
        executor.execute(W.wf_bad_result, WorkflowOptions(id=wid)).result(timeout=5)
    assert getattr(info.value.cause, "type", None) == "SerializationError"
    assert "workflow result" in str(info.value.cause)
    assert executor.describe(wid).status is WorkflowStatus.FAILED


def test_unserializable_activity_result_is_not_retried(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.WorkflowFailed):
        executor.execute(W.wf_unencodable_activity_result, WorkflowOptions(id=wid)).result(timeout=5)
    (failed,) = [ev.attrs for ev in executor.describe(wid).history if ev.type == "activity_failed"]
    assert failed["error"]["type"] == "SerializationError" and failed["attempt"] == 1


def test_activity_exception_whose_str_raises(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises(workflow.WorkflowFailed) as info:
        executor.execute(W.wf_unprintable, WorkflowOptions(id=wid)).result(timeout=5)
    assert "<unprintable Unprintable>" in str(info.value.cause)
    (failed,) = [ev.attrs for ev in executor.describe(wid).history if ev.type == "activity_failed"]
    assert failed["error"]["type"] == "Unprintable"
    # the executor is unharmed
    assert executor.execute(W.wf_echo, WorkflowOptions(id=new_id(), input=1)).result(timeout=5) == 1


def test_workflow_reference_that_is_not_a_function(executor: workflow.DurableExecutor) -> None:
    for bad in (42, None, 3.5):
        with pytest.raises(workflow.ConfigurationError):
            executor.execute(bad, WorkflowOptions())


def _three_args(ctx: Any, a: Any, b: Any) -> None: ...


def _no_args() -> None: ...


async def _async_workflow(ctx: Any, x: Any) -> None: ...


@pytest.mark.parametrize("fn", [_three_args, _no_args, _async_workflow, 42, "a string"],
                         ids=["three-args", "no-args", "async", "int", "str"])
def test_defn_refuses_what_cannot_be_a_workflow(fn: Any) -> None:
    with pytest.raises(workflow.ConfigurationError):
        workflow.defn(fn)


def test_execute_refuses_an_undecorated_function_of_the_wrong_shape(executor: workflow.DurableExecutor) -> None:
    with pytest.raises(workflow.ConfigurationError, match="must look like fn\\(ctx, input\\)"):
        executor.execute(_three_args, WorkflowOptions())


def _two_args(a: Any, b: Any) -> None: ...


@pytest.mark.parametrize("fn", [_two_args, 7], ids=["two-args", "int"])
def test_activity_refuses_what_cannot_be_an_activity(fn: Any) -> None:
    with pytest.raises(workflow.ConfigurationError):
        workflow.activity(fn)


def test_one_name_for_two_functions_is_refused() -> None:
    def wf_echo(ctx: Any, value: Any) -> Any:  # same name as the registered W.wf_echo
        return value

    with pytest.raises(workflow.ConfigurationError, match="already taken"):
        workflow.defn(wf_echo)
    with pytest.raises(workflow.ConfigurationError, match="already taken"):
        workflow.activity(name="echo")(lambda x: x)
    workflow.defn(W.wf_echo)  # registering the same function again is fine


def test_bad_options(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    with pytest.raises((TypeError, ValueError)):
        executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=1, timeout=-5))
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(wid)
