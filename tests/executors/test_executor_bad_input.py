"""Executor contract, bad input: every mistake is a typed error with a useful message, and nothing
half-done is left in the store."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from beluga import codec, workflow
from beluga.workflow import Signal, WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W
from tests.executors.helpers import wait_for_event

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


def wait_for_step(executor: workflow.DurableExecutor, wid: str) -> None:
    """wf_progress took its first step (its activity completed): it waits for signal "go"."""
    wait_for_event(executor, wid, "activity_completed", timeout=10)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# What a call accepts, every worker can read: msgpack's own ext values and nesting past the documented
# limit are refused at the call (before, a run's input of this kind stopped every run of its shard from
# being woken, and a signal payload of it was accepted and then dropped as undecodable).
FOREIGN = {"ext-type": msgpack.ExtType(42, b"x"), "ext-in-dict": {"a": [msgpack.ExtType(1, b"\xc1")]},
           "timestamp": msgpack.Timestamp(1, 0), "too-deep": _nested(codec.MAX_NESTING + 1)}


@pytest.mark.parametrize("value", list(FOREIGN.values()), ids=list(FOREIGN))
def test_unreadable_input_is_refused_at_the_call(executor: workflow.DurableExecutor, new_id: Ids, value: Any) -> None:
    wid = new_id()
    with pytest.raises(workflow.SerializationError, match="input|MAX_NESTING|msgpack"):
        executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=value))
    with pytest.raises(workflow.WorkflowNotFound):
        executor.describe(wid)


@pytest.mark.parametrize("value", list(FOREIGN.values()), ids=list(FOREIGN))
def test_unreadable_signal_payload_and_query_args_are_refused(executor: workflow.DurableExecutor, new_id: Ids,
                                                             value: Any) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_progress, WorkflowOptions(id=wid, input=10))
    wait_for_step(executor, wid)
    before = len(executor.describe(wid).history)
    with pytest.raises(workflow.SerializationError):
        executor.signal(wid, Signal("go", value))
    with pytest.raises(workflow.SerializationError):
        executor.query(wid, "add", value, 1)
    assert len(executor.describe(wid).history) == before
    executor.signal(wid, Signal("go", "good"))
    assert handle.result(timeout=10) == "good"


# The values the codec supports round-trip through a run: as its input, a signal payload and its result.
SUPPORTED = {"nan": math.nan, "tuple-keys": {(1, "a"): [2.5, None], (): "empty"},
             "deep-at-the-limit": _nested(codec.MAX_NESTING - 5), "big-int": 2**80,
             "mixed": {"when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "ids": frozenset({1, 2}),
                       "amount": Decimal("1.10"), "key": uuid.UUID(int=7)}}


@pytest.mark.parametrize("value", list(SUPPORTED.values()), ids=list(SUPPORTED))
def test_supported_values_round_trip_through_a_run(executor: workflow.DurableExecutor, new_id: Ids,
                                                    value: Any) -> None:
    wid = new_id()
    got = executor.execute(W.wf_echo, WorkflowOptions(id=wid, input=value)).result(timeout=10)
    assert repr(got) == repr(value)  # repr: NaN is not equal to itself
    handle = executor.execute(W.wf_wait_signal, WorkflowOptions(id=new_id()))
    executor.signal(handle.id, Signal("go", value))
    assert repr(handle.result(timeout=10)) == repr(value)


@pytest.mark.parametrize("bad", ["nul\x00inside", "line\nbreak", "esc\x1b[0m", "del\x7f", "c1\x85", ""],
                         ids=["nul", "newline", "escape", "del", "c1", "empty"])
def test_ids_and_names_with_control_characters_are_refused(executor: workflow.DurableExecutor, new_id: Ids,
                                                           bad: str) -> None:
    name = f"x{bad}y" if bad else bad
    if bad:  # an empty id means "make one up"
        with pytest.raises(workflow.InvalidName, match="workflow id"):
            executor.execute(W.wf_echo, WorkflowOptions(id=f"{new_id()}-{bad}", input=1))
    handle = executor.execute(W.wf_progress, WorkflowOptions(id=new_id(), input=10))
    wait_for_step(executor, handle.id)
    with pytest.raises(workflow.InvalidName, match="signal name"):
        executor.signal(handle.id, Signal(name, "x"))
    with pytest.raises(workflow.InvalidName, match="query name"):
        executor.query(handle.id, name, 1, 2)
    with pytest.raises(workflow.InvalidName, match="workflow id"):
        executor.signal(name, Signal("go", "x"))
    executor.signal(handle.id, Signal("go", "fine"))
    assert handle.result(timeout=10) == "fine"


def test_ids_with_colons_and_other_printable_text_work(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """Keys join ids with ':' and timer entries with NUL: printable ids of any shape stay apart."""
    base = new_id()
    ids = [f"{base}:a", f"{base}:a:inbox", f"{base}", f"{base} with spaces/é✓"]
    handles = [executor.execute(W.wf_wait_signal, WorkflowOptions(id=wid)) for wid in ids]
    for h in handles:
        executor.signal(h.id, Signal("go", h.id))
    assert [h.result(timeout=10) for h in handles] == ids
