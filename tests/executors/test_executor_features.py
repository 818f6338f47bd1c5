"""Executor contract, what workflows do: activities and their retries, timeouts and heartbeats, fan-out,
timers, signals raced against timers, side effects, children, continue-as-new, activity factories."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.workflow import Signal, WorkflowOptions, WorkflowStatus
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import Recorder, eventually, query_eventually, wait_for_event

Ids = Callable[[], str]


@pytest.mark.in_process  # asserts on_retry hooks, which fire where the engine runs
# --- retries ------------------------------------------------------------------------------------------------
@pytest.mark.not_temporal("Temporal retries an activity on its server: the workflow sees the final outcome "
                          "only, so retried attempts are not Beluga history events")
def test_retry_until_success(executor_factory: Backend, new_id: Ids) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks("on_retry"))
    wid = new_id()
    spec = {"key": wid, "fail_times": 2, "max_attempts": 5}
    result = ex.execute(W.wf_retry, WorkflowOptions(id=wid, input=spec)).result(timeout=5)
    assert result["attempt"] == 3
    assert [c["attempt"] for c in W.calls(wid)] == [1, 2, 3]
    retries = eventually(lambda: rec.of(wid, "on_retry"))
    assert len(retries) == 2  # one per failed attempt
    assert all(r["type"] == "ValueError" for r in retries)
    history = ex.describe(wid).history
    failed = [ev.attrs for ev in history if ev.type == "activity_failed"]
    assert [(f["attempt"], f["retry_in"] is not None) for f in failed] == [(1, True), (2, True)]
    assert [ev.attrs["attempt"] for ev in history if ev.type == "activity_started"] == [1, 2, 3]


@pytest.mark.in_process  # asserts on_retry hooks, which fire where the engine runs
def test_retries_spent(executor_factory: Backend, new_id: Ids) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks("on_retry", "on_workflow_complete"))
    wid = new_id()
    spec = {"key": wid, "fail_times": 99, "max_attempts": 3}
    result = ex.execute(W.wf_retry, WorkflowOptions(id=wid, input=spec)).result(timeout=5)
    assert result == {"error": "ValueError", "message": "attempt 3 failed", "attempts": 3}
    assert len(W.calls(wid)) == 3
    eventually(lambda: rec.of(wid, "on_workflow_complete"))
    assert len(rec.of(wid, "on_retry")) == 2  # not after the final attempt
    final = [ev.attrs for ev in ex.describe(wid).history if ev.type == "activity_failed"][-1]
    assert final["retry_in"] is None and final["attempt"] == 3


def test_retries_spent_uncaught_fails_the_workflow_with_activity_error(executor: workflow.DurableExecutor,
                                                                      new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_retry_uncaught, WorkflowOptions(id=wid, input={
        "key": wid, "fail_times": 9, "max_attempts": 2}))
    with pytest.raises(workflow.WorkflowFailed) as info:
        handle.result(timeout=5)
    cause = info.value.cause
    assert getattr(cause, "type", None) == "ActivityError"
    assert "attempt 2 failed" in str(cause)
    assert getattr(cause.__cause__, "type", None) == "ValueError"
    error = executor.describe(wid).error
    assert error["type"] == "ActivityError" and error["cause"]["type"] == "ValueError"


@pytest.mark.in_process  # asserts on_retry hooks, which fire where the engine runs
@pytest.mark.parametrize(("error", "non_retryable", "expected_type"), [
    ("declined", ["PaymentDeclined"], "PaymentDeclined"),
    ("fatal", [], "ApplicationError"),
])
def test_non_retryable_errors_fail_at_once(executor_factory: Backend, new_id: Ids, error: str,
                                           non_retryable: list[str], expected_type: str) -> None:
    rec = Recorder()
    ex = executor_factory.executor(hooks=rec.hooks("on_retry", "on_workflow_complete"))
    wid = new_id()
    spec = {"key": wid, "fail_times": 9, "max_attempts": 5, "error": error, "non_retryable": non_retryable}
    result = ex.execute(W.wf_retry, WorkflowOptions(id=wid, input=spec)).result(timeout=5)
    assert result["error"] == expected_type and result["attempts"] == 1
    assert len(W.calls(wid)) == 1
    eventually(lambda: rec.of(wid, "on_workflow_complete"))
    assert rec.of(wid, "on_retry") == []


def test_idempotency_key_is_stable_across_retries(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_retry, WorkflowOptions(id=wid, input={"key": wid, "fail_times": 2,
                                                                          "max_attempts": 3}))
    result = handle.result(timeout=5)
    seen = W.calls(wid)
    assert [c["attempt"] for c in seen] == [1, 2, 3]
    keys = {c["idempotency_key"] for c in seen}
    assert keys == {result["idempotency_key"]} == {f"{wid}:{handle.run_id}:1"}
    assert {(c["workflow_id"], c["run_id"], c["seq"]) for c in seen} == {(wid, handle.run_id, 1)}


@pytest.mark.parametrize("error", ["next_retry_delay", "http"])
def test_retry_after_waits_exactly_the_asked_delay(executor_factory: Backend, new_id: Ids, error: str) -> None:
    """An attempt that asks for its retry's delay (ApplicationError(next_retry_delay=), or an HTTP 429's
    `retry_after`) is retried after exactly that delay, not the policy's 0.01 s backoff: read from the times
    the executor recorded (the history's events; on Temporal, its server's attempt times)."""
    executor = executor_factory.executor()
    wid, delay = new_id(), 0.6
    spec = {"key": wid, "fail_times": 2, "delay": delay, "max_attempts": 5, "error": error}
    assert executor.execute(W.wf_retry_after, WorkflowOptions(id=wid, input=spec)).result(timeout=20) == 3
    if executor_factory.provider == "temporal":
        tries = W.calls(wid)
        gaps = [later["scheduled"] - earlier["started"] for earlier, later in zip(tries, tries[1:], strict=False)]
        assert [t["attempt"] for t in tries] == [1, 2, 3]
        assert all(delay <= gap < delay + 1.0 for gap in gaps), gaps
        return
    history = executor.describe(wid).history
    failed = [ev for ev in history if ev.type == "activity_failed"]
    started = {ev.attrs["attempt"]: ev.timestamp for ev in history if ev.type == "activity_started"}
    assert [(ev.attrs["retry_in"], ev.attrs["error"]["next_retry_delay"]) for ev in failed] == [(delay, delay)] * 2
    waits = [started[ev.attrs["attempt"] + 1] - ev.timestamp for ev in failed]
    assert all(delay <= wait < delay + 1.0 for wait in waits), waits


def test_retry_after_attempts_count_against_max_attempts_by_default(executor: workflow.DurableExecutor,
                                                                     new_id: Ids) -> None:
    wid = new_id()
    spec = {"key": wid, "fail_times": 9, "delay": 0.05, "max_attempts": 3}
    result = executor.execute(W.wf_retry_after, WorkflowOptions(id=wid, input=spec)).result(timeout=20)
    assert result == {"error": "ApplicationError", "attempts": 3}
    assert [c["attempt"] for c in W.calls(wid)] == [1, 2, 3]


@pytest.mark.not_temporal("Temporal's server counts every attempt against maximum_attempts: "
                          "retry_after_counts=False is not honoured there")
def test_retry_after_attempts_left_uncounted(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """`retry_after_counts=False`: three rate-limited attempts, then two plain failures; with
    max_attempts=3 the sixth attempt (the third counted) still runs and succeeds."""
    wid = new_id()
    spec = {"key": wid, "fail_times": 3, "plain_failures": 2, "delay": 0.05, "max_attempts": 3, "counts": False}
    assert executor.execute(W.wf_retry_after, WorkflowOptions(id=wid, input=spec)).result(timeout=20) == 6
    assert [c["attempt"] for c in W.calls(wid)] == [1, 2, 3, 4, 5, 6]
    wid = new_id()  # and a seventh counted failure is one too many
    spec = {**spec, "key": wid, "plain_failures": 9}
    result = executor.execute(W.wf_retry_after, WorkflowOptions(id=wid, input=spec)).result(timeout=20)
    assert result == {"error": "ValueError", "attempts": 6}


def test_activity_info_outside_an_activity() -> None:
    with pytest.raises(workflow.WorkflowError):
        workflow.activity_info()
    with pytest.raises(workflow.WorkflowError):
        workflow.heartbeat()


# --- timeouts and heartbeats -----------------------------------------------------------------------------------
def _attempt_failures(backend: Backend, ex: workflow.DurableExecutor, rec: Recorder, wid: str) -> list[dict]:
    """The failures of a run's retried attempts: its `activity_failed` events, or on Temporal (which retries
    on its server, so the history holds only the final outcome: docs/temporal.md) the `on_retry` hooks its
    worker fired in this process."""
    if backend.provider == "temporal":
        return eventually(lambda: rec.of(wid, "on_retry"))
    return [ev.attrs["error"] for ev in ex.describe(wid).history if ev.type == "activity_failed"]


def _executor_and_recorder(backend: Backend) -> tuple[workflow.DurableExecutor, Recorder]:
    rec = Recorder()
    return backend.executor(hooks=rec.hooks("on_retry") if backend.provider == "temporal" else None), rec


def test_activity_timeout_then_retry_succeeds(executor_factory: Backend, new_id: Ids) -> None:
    executor, rec = _executor_and_recorder(executor_factory)
    wid = new_id()
    # the slow attempt takes 10 s, the result is awaited 8: it comes from attempt 2, not from waiting. The
    # 1 s timeout is what a quick attempt needs on a loaded machine (on Temporal it counts the task's
    # delivery too: with 0.1 s, attempt 2 timed out as well under load)
    spec = {"key": wid, "seconds": 10.0, "slow_attempts": [1], "timeout": 1.0, "max_attempts": 3}
    assert executor.execute(W.wf_activity_timeout, WorkflowOptions(id=wid, input=spec)).result(timeout=8) == 2
    (failed,) = _attempt_failures(executor_factory, executor, rec, wid)
    assert failed["type"] == "TimeoutError" and "timeout" in failed["message"]


def test_activity_timeout_every_attempt(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    spec = {"key": wid, "seconds": 0.3, "timeout": 0.05, "max_attempts": 2}
    # the bound is a failure's, not a timing check: on a loaded machine two timed-out attempts on the
    # fleet took more than 5 s once (Celery's soft limit, then the retry)
    result = executor.execute(W.wf_activity_timeout, WorkflowOptions(id=wid, input=spec)).result(timeout=60)
    assert result["error"] == "TimeoutError" and result["attempts"] == 2
    assert "sleepy" in result["message"]


def test_heartbeat_timeout_and_details_reach_the_next_attempt(executor_factory: Backend, new_id: Ids) -> None:
    executor, rec = _executor_and_recorder(executor_factory)
    wid = new_id()
    # the silent attempt hangs 10 s, the result is awaited 8: it was given up, not waited for. The 1 s
    # heartbeat timeout leaves a loaded machine time for attempt 1's second heartbeat (0.05 s after its
    # first) and for attempt 2 to return (on Temporal the timeout runs from the start of every attempt)
    spec = {"key": wid, "hang": 10.0, "heartbeat_timeout": 1.0}
    result = executor.execute(W.wf_heartbeat, WorkflowOptions(id=wid, input=spec)).result(timeout=8)
    assert result == {"attempt": 2, "details": {"done": 2}}
    seen = W.calls(wid)
    assert [(c["attempt"], c["details"]) for c in seen] == [(1, None), (2, {"done": 2})]
    (failed,) = _attempt_failures(executor_factory, executor, rec, wid)
    assert failed["type"] == "TimeoutError" and "heartbeat" in failed["message"]


# --- fan-out, timers, signals against timers --------------------------------------------------------------------
def test_fan_out_and_wait_all(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    assert executor.execute(W.wf_fanout, WorkflowOptions(id=wid, input=20)).result(timeout=5) == list(range(1, 21))
    history = executor.describe(wid).history
    scheduled = [ev.id for ev in history if ev.type == "activity_scheduled"]
    assert len(scheduled) == 20 and scheduled == list(range(2, 22))  # all scheduled in one step


def test_durable_sleep(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    start = time.monotonic()
    assert executor.execute(W.wf_sleep, WorkflowOptions(id=wid, input=0.2)).result(timeout=5) == "woke"
    assert 0.2 <= time.monotonic() - start  # never early; how late is the recorded events' business below
    history = executor.describe(wid).history
    (started,) = [ev for ev in history if ev.type == "timer_started"]
    (fired,) = [ev for ev in history if ev.type == "timer_fired"]
    assert started.attrs["fire_at"] == pytest.approx(started.timestamp + 0.2)
    assert fired.timestamp >= started.attrs["fire_at"]


def test_timer_loses_to_a_signal(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_race, WorkflowOptions(id=wid, input=30))
    wait_for_event(executor, wid, "timer_started")
    executor.signal(wid, Signal("go", "first!"))
    assert handle.result(timeout=5) == {"winner": "signal", "payload": "first!"}


def test_timer_wins_without_a_signal(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    assert executor.execute(W.wf_race, WorkflowOptions(id=new_id(), input=0.1)).result(timeout=5) == {
        "winner": "timer"}


def test_receive_with_timeout(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    result = executor.execute(W.wf_receive_timeout, WorkflowOptions(id=new_id(), input=0.1)).result(timeout=5)
    assert result == "timeout: no signal 'go' within 0.1s"


# --- deterministic replacements ----------------------------------------------------------------------------------
def test_side_effect_is_recorded_once(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_side_effect, WorkflowOptions(id=wid, input=wid))
    first = query_eventually(executor, wid, "first")
    executor.signal(wid, Signal("go"))
    result = handle.result(timeout=5)
    assert result == first
    assert result["value"] == f"computed once for {wid}"
    assert W.calls(wid) == [{"event": "side_effect"}]
    (marker,) = [ev for ev in executor.describe(wid).history if ev.type == "marker_recorded"]
    assert marker.attrs["kind"] == "side_effect" and marker.attrs["value"] == result["value"]
    assert result["now"] == pytest.approx(executor.describe(wid).history[0].timestamp, abs=1e-5)


# --- children -------------------------------------------------------------------------------------------------
def test_child_workflow(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    assert executor.execute(W.wf_parent, WorkflowOptions(id=wid, input={"value": "hi"})).result(timeout=5) == "hi"
    child = executor.describe(f"{wid}/child-1")
    assert child.status is WorkflowStatus.COMPLETED and child.workflow_type == "wf_echo"
    assert child.parent == {"workflow_id": wid, "run_id": executor.describe(wid).run_id, "seq": 1}
    types = [ev.type for ev in executor.describe(wid).history]
    assert "child_workflow_started" in types and "child_workflow_completed" in types


def test_child_workflow_with_explicit_id(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid, child_id = new_id(), new_id()
    spec = {"value": 5, "child_id": child_id}
    assert executor.execute(W.wf_parent, WorkflowOptions(id=wid, input=spec)).result(timeout=5) == 5
    assert executor.describe(child_id).result == 5


def test_child_workflow_failure(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    result = executor.execute(W.wf_parent, WorkflowOptions(id=wid, input={"fail": True})).result(timeout=5)
    assert result == {"error": "ApplicationError", "message": "child broke"}
    assert executor.describe(f"{wid}/child-1").status is WorkflowStatus.FAILED


def test_child_id_already_running_fails_the_child_call(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid, busy = new_id(), new_id()
    executor.execute(W.wf_wait_signal, WorkflowOptions(id=busy))
    handle = executor.execute(W.wf_parent, WorkflowOptions(id=wid, input={"value": 1, "child_id": busy}))
    with pytest.raises(workflow.WorkflowFailed) as info:
        handle.result(timeout=5)
    assert "WorkflowAlreadyStarted" in str(info.value.cause)
    executor.signal(busy, Signal("go"))


# --- continue-as-new ------------------------------------------------------------------------------------------
def test_continue_as_new(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_continue, WorkflowOptions(id=wid, input=0))
    result = handle.result(timeout=5)  # follows the chain to the final run
    assert result["n"] == 3
    final = executor.describe(wid)
    assert final.workflow_id == wid and final.run_id == result["run_id"] != handle.run_id
    assert final.status is WorkflowStatus.COMPLETED and final.input == 3
    started = final.history[0]
    assert started.type == "workflow_started" and "continued_from" in started.attrs
    assert [ev.type for ev in final.history].count("workflow_started") == 1  # a fresh history
    assert executor.get_handle(wid).run_id == final.run_id


# --- activity factories ------------------------------------------------------------------------------------------
def test_llm_and_tool_activities(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    result = executor.execute(W.wf_agent, WorkflowOptions(id=new_id(), input="summarise")).result(timeout=5)
    assert result == {"text": "LLM: SUMMARISE", "tool": {"tool": "add", "sum": 3}}


@pytest.mark.in_process  # its InMemoryHumanManager lives in the process that runs the activity
def test_human_activity_parks_until_respond(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.execute(W.wf_human, WorkflowOptions(id=wid, input="refund order 42"))

    def request() -> workflow.HumanRequest | None:
        return next((r for r in list(W.HUMANS.pending.values()) if r.workflow_id == wid), None)

    req = eventually(request)
    assert (req.type, req.tool_name, req.description, req.risk_level) == (
        "approval", "refund", "refund order 42", "irreversible")
    assert req.input == {"amount": 10} and req.confidence == 0.4 and req.id
    time.sleep(0.05)
    assert handle.status() is WorkflowStatus.RUNNING  # parked, holding no worker
    W.HUMANS.respond(executor, req.id, workflow.HumanResponse("modify", "halve it", {"amount": 5}))
    assert handle.result(timeout=5) == {"decision": "modify", "feedback": "halve it", "modified": {"amount": 5}}


# --- rate and concurrency limits ------------------------------------------------------------------------------
def most_in_a_window(times: list[float], window: float = 1.0) -> int:
    """The most of `times` that fall in any half-open window [t, t + window)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of the [start, end) spans that overlap at any moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.not_temporal("Temporal has no fleet-wide limit per activity: rate limits are per task queue "
                          "and concurrency per worker (docs/temporal.md)")
def test_rate_and_concurrency_limits_hold_across_workers(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    """15 calls of an activity limited to 3 starts a second and 2 running: the starts and ends the activity
    noted itself keep both limits, throughput is near the limit, no attempt failed, and the attempts that
    waited are in the history as `activity_waiting` (neither a failure nor a retry)."""
    wid = new_id()
    spec = {"key": wid, "n": 15, "seconds": 0.5}
    assert executor.execute(W.wf_limited, WorkflowOptions(id=wid, input=spec)).result(timeout=60) == list(range(15))
    noted = W.calls(wid)
    starts = [c["started"] for c in noted]
    assert most_in_a_window(starts) <= 3, sorted(starts)
    assert most_at_once([(c["started"], c["ended"]) for c in noted]) <= 2
    history = executor.describe(wid).history
    assert not [ev for ev in history if ev.type == "activity_failed"]
    waits = [ev.attrs for ev in history if ev.type == "activity_waiting"]
    assert waits and {w["limit"] for w in waits} == {f"tenant-{wid}"}
    assert {w["why"] for w in waits} <= {"rate", "concurrency"}
    assert [ev.attrs["attempt"] for ev in history if ev.type == "activity_started"] == [1] * 15
