"""`WorkflowInstance.activate(events) -> commands`, one event kind and one command kind at a time.

Every test drives the pure core by hand (`Driver`, over the run driver): no executor, no threads, no clock.
Most also replay the history they built and check that the same code asks for nothing new.
"""

from __future__ import annotations

import gc
import uuid
import weakref
from datetime import datetime, timezone
from typing import Any

import pytest

from beluga.core import commands as cmds
from beluga.core import steps as st
from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    QueryNotFound,
    RemoteError,
    SerializationError,
    WorkflowCancelled,
    WorkflowError,
)
from beluga.core.records import Event
from beluga.core.retry import RetryPolicy
from tests.core.harness import T0, Driver, E, failure, instance, recorded_commands, replay, scheduled


def assert_replays(fn: Any, d: Driver, **kwargs: Any) -> None:
    """The same code replaying the whole history asks for nothing new and ends where the run ended."""
    inst, new = replay(fn, d.history, **kwargs)
    assert new == []
    assert inst.finished == d.instance.finished
    assert inst.version == len(d.history)


# --- start and completion ---------------------------------------------------------------------------
def test_workflow_started_runs_the_code_until_it_blocks() -> None:
    def wf(ctx: Any, x: int) -> Any:
        return ctx.execute_activity("double", x)

    d = Driver(wf, 21)
    assert d.commands == [cmds.ScheduleActivity(1, "double", 21, {})]
    assert [e.type for e in d.history] == [E.WORKFLOW_STARTED, E.ACTIVITY_SCHEDULED, E.ACTIVITY_STARTED]
    assert d.effects == [st.DispatchAttempt(1, 1, "double", 21, {})]
    assert not d.instance.finished


def test_workflow_without_input_parameter() -> None:
    def wf(ctx: Any) -> str:
        return "no input"

    d = Driver(wf, None)
    assert d.commands == [cmds.CompleteWorkflow("no input")]
    assert d.instance.finished
    assert_replays(wf, d)


def test_context_identity() -> None:
    def wf(ctx: Any) -> Any:
        return [ctx.workflow_id, ctx.run_id, ctx.workflow_type]

    d = Driver(wf, workflow_id="order-1", run_id="r-9", name="orders")
    assert d.commands == [cmds.CompleteWorkflow(["order-1", "r-9", "orders"])]


def test_events_must_continue_the_history_in_order() -> None:
    inst = instance(lambda ctx: None)
    with pytest.raises(ValueError, match="applied in order"):
        inst.activate([Event(2, E.WORKFLOW_STARTED, T0, {"input": None, "seed": 1})])


# --- activities ----------------------------------------------------------------------------------------
def test_activity_scheduled_then_completed() -> None:
    def wf(ctx: Any, x: int) -> Any:
        return ctx.execute_activity("double", x, retry=RetryPolicy(max_attempts=5), timeout=3,
                                    heartbeat_timeout=1, queue="fast")

    d = Driver(wf, 21)
    (cmd,) = d.commands
    assert isinstance(cmd, cmds.ScheduleActivity)
    assert cmd.options == {"retry": RetryPolicy(max_attempts=5).to_dict(), "timeout": 3.0,
                           "heartbeat_timeout": 1.0, "queue": "fast"}
    scheduled_event, started = d.history[-2:]
    assert scheduled_event.attrs["name"] == "double" and scheduled_event.attrs["timeout"] == 3.0
    assert (started.type, started.attrs) == (E.ACTIVITY_STARTED, {"seq": 1, "attempt": 1})
    assert d.instance.is_pending(1)
    assert d.complete(1, 42) == [cmds.CompleteWorkflow(42)]
    assert not d.instance.is_pending(1)
    assert_replays(wf, d)


def test_activity_by_decorated_function_uses_its_registered_name() -> None:
    from beluga.core.definitions import activity

    @activity(name="core_tests.billing.charge")
    def charge(x: int) -> int:
        return x

    def wf(ctx: Any) -> Any:
        return ctx.execute_activity(charge, 1)

    assert scheduled(Driver(wf).commands) == ["core_tests.billing.charge"]


def test_undecorated_function_is_not_an_activity() -> None:
    def plain(x: int) -> int:
        return x

    def wf(ctx: Any) -> Any:
        return ctx.execute_activity(plain, 1)

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] == "ConfigurationError"
    assert "is not an activity" in cmd.error["message"]


def test_activity_failed_with_retry_in_changes_nothing() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.execute_activity("flaky")

    d = Driver(wf)
    assert d.fail(1, failure(), retry_in=0.2) == []
    assert d.effects == [st.ArmRetry(1, 2, d.clock + 0.2, failure())]  # the executor's timer begins attempt 2
    assert d.fail(1, failure(), attempt=2, retry_in=0.4) == []
    assert d.instance.is_pending(1)
    assert d.complete(1, "third time lucky", attempt=3) == [cmds.CompleteWorkflow("third time lucky")]
    assert_replays(wf, d)


def test_activity_failed_for_good_raises_activity_error_with_cause() -> None:
    seen: list[BaseException] = []

    def wf(ctx: Any) -> Any:
        try:
            return ctx.execute_activity("flaky")
        except ActivityError as exc:
            seen.append(exc)
            return {"activity": exc.activity, "attempts": exc.attempts, "cause": str(exc.cause)}

    d = Driver(wf)
    d.fail(1, failure("KeyError", "'sku'"), retry_in=0.1)
    commands = d.fail(1, failure("KeyError", "'sku'"), attempt=2)
    assert commands == [cmds.CompleteWorkflow({"activity": "flaky", "attempts": 2, "cause": "KeyError: 'sku'"})]
    (err,) = seen
    assert isinstance(err.cause, RemoteError) and err.cause.type == "KeyError"
    assert err.__cause__ is err.cause
    assert "flaky" in str(err) and "2 attempt(s)" in str(err)
    assert_replays(wf, d)


def test_uncaught_activity_error_fails_the_workflow_with_the_cause_nested() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.execute_activity("flaky")

    d = Driver(wf)
    (cmd,) = d.fail(1, failure("ValueError", "bad sku", non_retryable=True))
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] == "ActivityError"
    assert cmd.error["cause"]["type"] == "ValueError"
    assert cmd.error["cause"]["message"] == "bad sku"


def test_fan_out_with_start_activity_and_wait_all() -> None:
    def wf(ctx: Any, n: int) -> Any:
        futures = [ctx.start_activity("square", i) for i in range(n)]
        assert not any(f.done() for f in futures)
        return ctx.wait_all(futures)

    d = Driver(wf, 3)
    assert scheduled(d.commands) == ["square"] * 3
    assert [c.seq for c in d.commands] == [1, 2, 3]
    assert d.complete(3, 4) == []  # out of order
    assert d.complete(1, 0) == []
    assert d.complete(2, 1) == [cmds.CompleteWorkflow([0, 1, 4])]
    assert_replays(wf, d)


def test_wait_all_raises_the_first_failure_in_argument_order() -> None:
    def wf(ctx: Any) -> Any:
        a, b = ctx.start_activity("a"), ctx.start_activity("b")
        try:
            ctx.wait_all([a, b])
        except ActivityError as exc:
            return exc.activity
        return None

    d = Driver(wf)
    d.fail(2, failure("ValueError", "b broke"))
    assert d.commands == []
    assert d.fail(1, failure("ValueError", "a broke")) == [cmds.CompleteWorkflow("a")]


def test_future_done_and_result() -> None:
    def wf(ctx: Any) -> Any:
        f = ctx.start_activity("a")
        before = f.done()
        value = f.result()
        return [before, f.done(), value]

    d = Driver(wf)
    assert d.complete(1, "v") == [cmds.CompleteWorkflow([False, True, "v"])]


# --- timers ----------------------------------------------------------------------------------------
def test_sleep_starts_a_timer_and_wakes_when_it_fires() -> None:
    def wf(ctx: Any) -> Any:
        ctx.sleep(30)
        return ctx.now().timestamp()

    d = Driver(wf)
    assert d.commands == [cmds.StartTimer(1, 30.0)]
    assert d.history[-1].attrs == {"seq": 1, "duration": 30.0, "fire_at": T0 + 30.0}
    assert d.fire(1, dt=30) == [cmds.CompleteWorkflow(T0 + 30)]
    assert_replays(wf, d)


def test_timer_accepts_timedelta() -> None:
    from datetime import timedelta

    def wf(ctx: Any) -> Any:
        return ctx.timer(timedelta(minutes=2)).result()

    assert Driver(wf).commands == [cmds.StartTimer(1, 120.0)]


@pytest.mark.parametrize("duration", [-1, "10", None])
def test_bad_durations_fail_the_workflow(duration: Any) -> None:
    def wf(ctx: Any) -> Any:
        ctx.sleep(duration)

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] in ("ValueError", "TypeError")


# --- signals -------------------------------------------------------------------------------------------
def test_signals_sent_before_receive_are_buffered_in_order() -> None:
    def wf(ctx: Any) -> Any:
        ctx.execute_activity("slow")
        ch = ctx.receive_signal("msg")
        return [ch.receive(), ch.receive(), ch.try_receive(), ctx.receive_signal("other").try_receive()]

    d = Driver(wf)
    assert d.signal("msg", "first") == []
    assert d.signal("other", "x") == []
    assert d.signal("msg", "second") == []
    assert d.complete(1) == [cmds.CompleteWorkflow(["first", "second", None, "x"])]
    assert_replays(wf, d)


def test_receive_parks_until_the_signal_arrives() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.receive_signal("approve").receive()

    d = Driver(wf)
    assert d.commands == []
    assert d.signal("unrelated", 1) == []
    assert not d.instance.finished
    assert d.signal("approve", {"by": "ana"}) == [cmds.CompleteWorkflow({"by": "ana"})]
    assert_replays(wf, d)


def test_receive_with_timeout_raises_timeout_error_when_the_timer_fires() -> None:
    def wf(ctx: Any) -> Any:
        try:
            return ctx.receive_signal("approve").receive(timeout=5)
        except TimeoutError as exc:
            return f"timed out: {exc}"

    d = Driver(wf)
    assert d.commands == [cmds.StartTimer(1, 5.0)]
    assert d.fire(1) == [cmds.CompleteWorkflow("timed out: no signal 'approve' within 5s")]
    assert_replays(wf, d)


def test_receive_with_timeout_returns_the_signal_that_came_first() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.receive_signal("approve").receive(timeout=5)

    d = Driver(wf)
    assert d.signal("approve", "yes") == [cmds.CompleteWorkflow("yes")]
    assert_replays(wf, d)


def test_receive_with_timeout_and_a_buffered_signal_starts_no_timer() -> None:
    def wf(ctx: Any) -> Any:
        ctx.execute_activity("a")
        return ctx.receive_signal("approve").receive(timeout=5)

    d = Driver(wf)
    d.signal("approve", "early")
    assert d.complete(1) == [cmds.CompleteWorkflow("early")]


# --- wait_any / wait_all ---------------------------------------------------------------------------------
def test_wait_any_timer_against_signal_channel() -> None:
    def wf(ctx: Any) -> Any:
        timer, channel = ctx.timer(60), ctx.receive_signal("go")
        first = ctx.wait_any(timer, channel)
        return channel.receive() if first is channel else "timer"

    by_signal = Driver(wf)
    assert by_signal.commands == [cmds.StartTimer(1, 60.0)]
    assert by_signal.signal("go", "now") == [cmds.CompleteWorkflow("now")]
    assert_replays(wf, by_signal)

    by_timer = Driver(wf)
    assert by_timer.fire(1, dt=60) == [cmds.CompleteWorkflow("timer")]
    assert_replays(wf, by_timer)


def test_wait_any_prefers_argument_order_when_several_are_ready() -> None:
    def wf(ctx: Any) -> Any:
        a, b = ctx.start_activity("a"), ctx.start_activity("b")
        ctx.wait_all([a, b])
        return [ctx.wait_any(b, a) is b, ctx.wait_any([a, b]) is a]

    d = Driver(wf)
    d.complete(2)
    assert d.complete(1) == [cmds.CompleteWorkflow([True, True])]


# --- deterministic replacements ------------------------------------------------------------------------
def test_side_effect_is_called_once_and_replayed_without_calling() -> None:
    calls: list[int] = []

    def wf(ctx: Any) -> Any:
        value = ctx.side_effect(lambda: calls.append(1) or f"value-{len(calls)}")
        ctx.execute_activity("a")
        return value

    d = Driver(wf)
    assert d.commands == [cmds.RecordMarker(1, "side_effect", "value-1"), cmds.ScheduleActivity(2, "a")]
    assert d.complete(2) == [cmds.CompleteWorkflow("value-1")]
    assert calls == [1]
    calls.append(99)  # a replay that called fn would now produce "value-3"
    inst, new = replay(wf, d.history)
    assert new == [] and inst.finished
    assert calls == [1, 99]


def test_unserializable_side_effect_value_fails_the_workflow() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.side_effect(lambda: object())

    (cmd,) = Driver(wf, check_payload=_json_only).commands
    assert isinstance(cmd, cmds.FailWorkflow) and cmd.error["type"] == "SerializationError"
    assert "side_effect value" in cmd.error["message"]


def test_now_random_and_uuid4_are_identical_on_replay() -> None:
    def wf(ctx: Any) -> Any:
        first = [ctx.now().isoformat(), ctx.random(), str(ctx.uuid4())]
        ctx.receive_signal("go").receive()
        return first + [ctx.now().isoformat(), ctx.random(), str(ctx.uuid4())]

    d = Driver(wf, seed=42)
    d.signal("go")
    (done,) = d.commands
    assert isinstance(done, cmds.CompleteWorkflow)
    start_iso, r1, u1, later_iso, r2, u2 = done.result
    assert start_iso == datetime.fromtimestamp(T0, tz=timezone.utc).isoformat()
    assert later_iso == datetime.fromtimestamp(T0 + 1, tz=timezone.utc).isoformat()
    assert 0 <= r1 < 1 and r1 != r2 and u1 != u2
    assert uuid.UUID(u1).version == 4

    captured: list[Any] = []

    def same(ctx: Any) -> Any:
        result = wf(ctx)
        captured.append(result)
        return result

    inst, new = replay(same, d.history)
    assert new == [] and captured == [done.result]

    other = Driver(wf, seed=43)
    other.signal("go")
    assert other.commands[0].result[1] != r1


def test_now_is_the_time_of_the_input_being_reacted_to() -> None:
    def wf(ctx: Any) -> Any:
        times = [ctx.now().timestamp()]
        ctx.execute_activity("a")
        times.append(ctx.now().timestamp())
        return times

    d = Driver(wf)
    assert d.fail(1, failure(), retry_in=3, dt=5) == []  # attempt 2 is due 3s later
    assert d.complete(1, attempt=2, dt=4) == [cmds.CompleteWorkflow([T0, T0 + 12])]
    assert [(e.type, e.timestamp - T0) for e in d.history[-4:]] == [
        (E.ACTIVITY_FAILED, 5), (E.ACTIVITY_STARTED, 8), (E.ACTIVITY_COMPLETED, 12), (E.WORKFLOW_COMPLETED, 12)]


# --- child workflows -----------------------------------------------------------------------------------
def test_child_workflow_completed() -> None:
    def wf(ctx: Any) -> Any:
        a = ctx.execute_child_workflow("child", {"n": 1})
        b = ctx.execute_child_workflow("child", 2, id="explicit-id")
        return [a, b]

    d = Driver(wf, workflow_id="parent")
    assert d.commands == [cmds.StartChildWorkflow(1, "child", "parent/child-1", {"n": 1})]
    assert d.history[-1].attrs["workflow_id"] == "parent/child-1"
    assert d.child_completed(1, "one") == [cmds.StartChildWorkflow(2, "child", "explicit-id", 2)]
    assert d.child_completed(2, "two") == [cmds.CompleteWorkflow(["one", "two"])]
    assert_replays(wf, d, workflow_id="parent")


def test_child_workflow_failed_raises_child_workflow_error() -> None:
    def wf(ctx: Any) -> Any:
        try:
            ctx.execute_child_workflow("child")
        except ChildWorkflowError as exc:
            assert isinstance(exc, ActivityError)
            return [exc.activity, exc.cause.type, exc.cause.message]
        return None

    d = Driver(wf)
    assert d.child_failed(1, failure("ApplicationError", "child said no")) == [
        cmds.CompleteWorkflow(["child", "ApplicationError", "child said no"])]
    assert_replays(wf, d)


# --- continue-as-new -------------------------------------------------------------------------------------
def test_continue_as_new_ends_the_run_with_the_new_input() -> None:
    def wf(ctx: Any, n: int) -> Any:
        ctx.execute_activity("step", n)
        try:
            ctx.continue_as_new(n + 1)
        except Exception:  # a BaseException: user code catching Exception does not stop it
            return "swallowed"
        return "unreachable"

    d = Driver(wf, 4)
    assert d.complete(1) == [cmds.ContinueAsNew(5)]
    assert d.instance.finished
    assert d.history[-1].type == E.WORKFLOW_CONTINUED_AS_NEW
    assert d.history[-1].attrs == {"input": 5}
    assert_replays(wf, d)


# --- cancellation ----------------------------------------------------------------------------------------
def _cancellable(log: list[str]) -> Any:
    def wf(ctx: Any) -> Any:
        try:
            ctx.receive_signal("never").receive()
        except WorkflowCancelled:
            log.append(f"cancelled, is_cancelled={ctx.is_cancelled()}")
            ctx.execute_activity("cleanup")  # allowed: the cancellation was delivered once
            log.append("cleaned up")
            raise
        return "not cancelled"

    return wf


def test_cancel_is_delivered_once_then_cleanup_runs_then_cancel_workflow() -> None:
    log: list[str] = []
    wf = _cancellable(log)
    d = Driver(wf)
    assert not d.instance.cancel_requested
    assert scheduled(d.cancel()) == ["cleanup"]
    assert log == ["cancelled, is_cancelled=True"]
    assert d.cancel() == []  # a second request is not delivered again
    assert d.complete(1) == [cmds.CancelWorkflow()]
    assert log[-1] == "cleaned up"
    assert d.history[-1].type == E.WORKFLOW_CANCELED
    assert_replays(_cancellable([]), d)


def test_cancel_while_an_activity_runs_interrupts_the_wait() -> None:
    def wf(ctx: Any) -> Any:
        ctx.execute_activity("long")
        return "finished"

    d = Driver(wf)
    assert d.cancel() == [cmds.CancelWorkflow()]


def test_workflow_that_swallows_the_cancel_still_ends_cancelled() -> None:
    def wf(ctx: Any) -> Any:
        try:
            ctx.sleep(100)
        except WorkflowCancelled:
            pass
        ctx.sleep(1)  # not interrupted again
        return "done anyway"

    d = Driver(wf)
    assert d.cancel() == [cmds.StartTimer(2, 1.0)]
    assert d.fire(2) == [cmds.CancelWorkflow()]


def test_workflow_cancelled_raised_without_a_cancel_request_is_a_failure() -> None:
    def wf(ctx: Any) -> Any:
        raise WorkflowCancelled("self-inflicted")

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow) and cmd.error["type"] == "WorkflowCancelled"


# --- failures ---------------------------------------------------------------------------------------------
def test_workflow_exception_fails_with_type_message_and_traceback() -> None:
    def wf(ctx: Any, order: str) -> Any:
        raise KeyError(f"no such order {order}")

    (cmd,) = Driver(wf, "o-1").commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] == "KeyError"
    assert cmd.error["message"] == "'no such order o-1'"
    assert "Traceback" in cmd.error["traceback"] and "in wf" in cmd.error["traceback"]
    assert cmd.error["non_retryable"] is False


def test_application_error_keeps_its_message_and_flag() -> None:
    def wf(ctx: Any) -> Any:
        raise ApplicationError("order rejected", non_retryable=True)

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert (cmd.error["type"], cmd.error["message"], cmd.error["non_retryable"]) == (
        "ApplicationError", "order rejected", True)


def _json_only(value: Any) -> None:
    """A check_payload in the spirit of the executors': only plain data passes."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _json_only(v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _json_only(k)
            _json_only(v)
        return
    raise SerializationError(f"cannot encode {type(value).__name__}")


def test_unserializable_result_fails_the_workflow_with_serialization_error() -> None:
    def wf(ctx: Any) -> Any:
        return {"handle": object()}

    d = Driver(wf, check_payload=_json_only)
    (cmd,) = d.commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] == "SerializationError"
    assert cmd.error["message"] == "workflow result: cannot encode object"
    assert cmd.error["non_retryable"] is True
    assert_replays(wf, d, check_payload=_json_only)


def test_unserializable_activity_input_fails_before_scheduling() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.execute_activity("a", object())

    (cmd,) = Driver(wf, check_payload=_json_only).commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert "input of activity 'a'" in cmd.error["message"]


def test_unprintable_exception_is_still_recorded() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    def wf(ctx: Any) -> Any:
        raise Unprintable()

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow)
    assert cmd.error["type"] == "Unprintable"
    assert cmd.error["message"] == "<unprintable Unprintable>"


# --- queries ----------------------------------------------------------------------------------------------
def test_query_handlers_read_current_state() -> None:
    def wf(ctx: Any) -> Any:
        state = {"step": "validating"}
        ctx.set_query_handler("progress", lambda: state["step"])
        ctx.set_query_handler("echo", lambda *args: list(args))
        ctx.execute_activity("validate")
        state["step"] = "waiting"
        return ctx.receive_signal("go").receive()

    d = Driver(wf)
    assert d.instance.query("progress") == "validating"
    d.complete(1)
    assert d.instance.query("progress") == "waiting"
    assert d.instance.query("echo", 1, "two") == [1, "two"]
    with pytest.raises(QueryNotFound, match="'nope'.*'echo', 'progress'"):
        d.instance.query("nope")
    replayed, _ = replay(wf, d.history)
    assert replayed.query("progress") == "waiting"


@pytest.mark.parametrize("name", ["status", "result"])
def test_built_in_query_names_cannot_be_overridden(name: str) -> None:
    def wf(ctx: Any) -> Any:
        ctx.set_query_handler(name, lambda: 1)

    (cmd,) = Driver(wf).commands
    assert isinstance(cmd, cmds.FailWorkflow) and "built in" in cmd.error["message"]


def test_query_handler_cannot_block() -> None:
    def wf(ctx: Any) -> Any:
        ctx.set_query_handler("bad", lambda: ctx.receive_signal("x").receive())
        ctx.receive_signal("go").receive()

    d = Driver(wf)
    with pytest.raises(WorkflowError, match="only be made by the workflow itself"):
        d.instance.query("bad")


# --- eviction -----------------------------------------------------------------------------------------------
def test_close_unwinds_a_parked_workflow_and_a_replay_resumes_it() -> None:
    log: list[str] = []

    def wf(ctx: Any) -> Any:
        try:
            return ctx.receive_signal("go").receive()
        finally:
            log.append("finally")

    d = Driver(wf)
    d.instance.close()
    assert log == ["finally"]
    inst, new = replay(wf, d.history)
    assert new == []
    nxt = Event(len(d.history) + 1, E.SIGNAL_RECEIVED, T0 + 5, {"name": "go", "payload": "ok"})
    assert inst.activate([nxt], recording=True) == [cmds.CompleteWorkflow("ok")]


@pytest.mark.parametrize("how", ["closed while parked", "completed"])
def test_a_dropped_run_is_freed_by_reference_counting(how: str) -> None:
    """No reference cycle ties a run's instance, context, channels and futures together: a run dropped
    from memory frees them (and the buffers they hold) at once, not at the cyclic collector's next full
    collection. A worker's cache drops thousands of runs; their garbage, piling up between full
    collections, grew its memory (about 10 objects and 8 KB of buffers per run)."""

    def wf(ctx: Any) -> Any:
        timer = ctx.timer(60)
        go = ctx.receive_signal("go")
        ctx.wait_any(go, timer)
        return go.receive(timeout=5)

    d = Driver(wf)
    if how == "completed":
        d.signal("go", "ok")
        assert d.instance.finished
    inst = d.instance
    ctx = inst._ctx
    assert ctx is not None
    alive = [weakref.ref(x) for x in (inst, ctx, ctx._channels["go"], ctx._rng)]
    gc.collect()
    gc.disable()
    try:
        if how != "completed":
            inst.close()
        del d, inst, ctx
        assert [r() for r in alive] == [None] * len(alive)
    finally:
        gc.enable()


def test_a_context_kept_past_its_run_says_so() -> None:
    def wf(ctx: Any) -> Any:
        return ctx.receive_signal("go").receive()

    d = Driver(wf)
    ctx = d.instance._ctx
    d.instance.close()
    del d
    gc.collect()
    with pytest.raises(WorkflowError, match="no longer in memory"):
        ctx.now()


# --- every command maps to its event ----------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "event_type", "attrs"), [
    (cmds.ScheduleActivity(1, "a", 5, {"timeout": 2.0}), E.ACTIVITY_SCHEDULED,
     {"seq": 1, "name": "a", "input": 5, "timeout": 2.0}),
    (cmds.StartTimer(2, 3.0), E.TIMER_STARTED, {"seq": 2, "duration": 3.0, "fire_at": 13.0}),
    (cmds.RecordMarker(3, "side_effect", "v"), E.MARKER_RECORDED, {"seq": 3, "kind": "side_effect", "value": "v"}),
    (cmds.StartChildWorkflow(4, "child", "p/child-4", 1), E.CHILD_WORKFLOW_STARTED,
     {"seq": 4, "workflow_type": "child", "workflow_id": "p/child-4", "input": 1,
      "parent_close_policy": "terminate"}),
    (cmds.CompleteWorkflow("r"), E.WORKFLOW_COMPLETED, {"result": "r"}),
    (cmds.FailWorkflow({"type": "X"}), E.WORKFLOW_FAILED, {"error": {"type": "X"}}),
    (cmds.CancelWorkflow(), E.WORKFLOW_CANCELED, {}),
    (cmds.ContinueAsNew(7), E.WORKFLOW_CONTINUED_AS_NEW, {"input": 7}),
])
def test_to_event(command: Any, event_type: str, attrs: dict[str, Any]) -> None:
    ev = cmds.to_event(command, 9, 10.0)
    assert (ev.id, ev.type, ev.timestamp, ev.attrs) == (9, event_type, 10.0, attrs)
    assert cmds.matches(command, ev)
    assert recorded_commands([ev]) == [command]  # the harness reads it back


def test_to_event_rejects_non_commands() -> None:
    with pytest.raises(TypeError):
        cmds.to_event("not a command", 1, 0.0)  # type: ignore[arg-type]


# --- informational events -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("type", "attrs"), [
    (E.ACTIVITY_STARTED, {"seq": 1, "attempt": 1}),
    (E.ACTIVITY_FAILED, {"seq": 1, "attempt": 1, "error": failure(), "retry_in": 0.5}),
    (E.WORKFLOW_TIMED_OUT, {}),
    ("some_future_event_type", {"whatever": 1}),
])
def test_informational_events_wake_nothing(type: str, attrs: dict[str, Any]) -> None:
    def wf(ctx: Any) -> Any:
        ctx.execute_activity("a")
        return ctx.now().timestamp()

    # the instance itself, at the event level: the driver notes the first three, a newer Beluga may write the last
    history = Driver(wf).history
    inst, _ = replay(wf, history)
    at = len(history)
    assert inst.activate([Event(at + 1, type, T0 + 50, attrs)], recording=True) == []
    assert inst.is_pending(1) and not inst.finished
    done = Event(at + 2, E.ACTIVITY_COMPLETED, T0 + 52, {"seq": 1, "attempt": 1, "result": None})
    assert inst.activate([done], recording=True) == [cmds.CompleteWorkflow(T0 + 52)]  # now(): the completion's time
