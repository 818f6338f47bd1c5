"""Workflows and activities the executor tests run, registered at import time under their function
names, so that a subprocess (a crashed worker, another executor) that imports this module finds them.

Activities note what happened in `CALLS`, keyed by a value of their input (the test's unique workflow
id), so tests running against one process-wide registry do not see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from typing import Any

from beluga import workflow

_LOCK = threading.Lock()
CALLS: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
# Where workers in other processes record calls (Redis), set in workers by the test fleet's environment
# and in the test process while a celery-backed test runs.
SHARED_URL: str | None = os.environ.get("BELUGA_TEST_CALLS_URL")


def _shared() -> Any:
    import redis

    return redis.Redis.from_url(SHARED_URL)


def note(key: str, **info: Any) -> None:
    if SHARED_URL:
        from beluga import codec

        _shared().rpush(f"test:calls:{key}", codec.encode(info))
        return
    with _LOCK:
        CALLS[key].append(info)


def calls(key: str) -> list[dict[str, Any]]:
    if SHARED_URL:
        from beluga import codec

        return [codec.decode(raw) for raw in _shared().lrange(f"test:calls:{key}", 0, -1)]
    with _LOCK:
        return list(CALLS[key])


def fast_retry(max_attempts: int = 3, non_retryable: tuple[Any, ...] = ()) -> workflow.RetryPolicy:
    return workflow.RetryPolicy(max_attempts=max_attempts, initial_interval=0.01, backoff_coefficient=2.0,
                                max_interval=0.05, non_retryable=non_retryable)


class PaymentDeclined(Exception):
    pass


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


# --- activities -------------------------------------------------------------------------------------------
@workflow.activity()
def echo(value: Any) -> Any:
    return value


@workflow.activity()
def add_one(x: int) -> int:
    return x + 1


@workflow.activity()
def flaky(spec: dict[str, Any]) -> dict[str, Any]:
    """Fails its first `fail_times` attempts with the error named by `error`."""
    info = workflow.activity_info()
    note(spec["key"], attempt=info.attempt, idempotency_key=info.idempotency_key, seq=info.seq,
         run_id=info.run_id, workflow_id=info.workflow_id)
    if info.attempt <= spec.get("fail_times", 0):
        kind = spec.get("error", "value")
        if kind == "fatal":
            raise workflow.ApplicationError("fatal, do not retry", non_retryable=True)
        if kind == "declined":
            raise PaymentDeclined("card declined")
        raise ValueError(f"attempt {info.attempt} failed")
    return {"attempt": info.attempt, "idempotency_key": info.idempotency_key}


class TooManyRequests(Exception):
    """What an HTTP client raises for a 429: the server's `Retry-After`, in seconds, as `retry_after`."""

    def __init__(self, retry_after: str) -> None:
        super().__init__(f"429 Too Many Requests (Retry-After: {retry_after})")
        self.retry_after = retry_after


@workflow.activity()
def rate_limited(spec: dict[str, Any]) -> int:
    """Fails its first `fail_times` attempts asking the next one to wait `delay` seconds (an
    `ApplicationError`'s `next_retry_delay`, or with `error="http"` a 429's `retry_after`), then the
    `plain_failures` attempts after them with a plain error. Notes each attempt and, on Temporal, the
    server's times of it (the history there holds the final outcome only)."""
    info = workflow.activity_info()
    note(spec["key"], attempt=info.attempt, **_temporal_times())
    if info.attempt <= spec.get("fail_times", 0):
        if spec.get("error") == "http":
            raise TooManyRequests(str(spec["delay"]))
        raise workflow.ApplicationError("rate limited", next_retry_delay=spec["delay"])
    if info.attempt <= spec.get("fail_times", 0) + spec.get("plain_failures", 0):
        raise ValueError(f"attempt {info.attempt} failed")
    return info.attempt


def _temporal_times() -> dict[str, float]:
    """When Temporal's server scheduled and started this attempt (empty outside a Temporal worker)."""
    try:
        from temporalio import activity
    except ImportError:
        return {}
    if not activity.in_activity():
        return {}
    info = activity.info()
    return {"scheduled": info.current_attempt_scheduled_time.timestamp(), "started": info.started_time.timestamp()}


def shared_now() -> float:
    """The time as the activities note it: the shared Redis's clock when workers run in other processes."""
    if SHARED_URL:
        seconds, micros = _shared().time()
        return seconds + micros / 1e6
    return time.time()


@workflow.activity(rate_limit="3/s", max_concurrent=2, rate_key=lambda spec: f"tenant-{spec['key']}")
def limited(spec: dict[str, Any]) -> int:
    """Limited to 3 starts a second and 2 running, per test (its key is the test's: a tenant's limit);
    notes when it started and ended."""
    started = shared_now()
    time.sleep(spec["seconds"])
    note(spec["key"], i=spec["i"], started=started, ended=shared_now())
    return spec["i"]


@workflow.activity(max_concurrent=1, rate_key=lambda spec: f"one-{spec['key']}")
def one_at_a_time(spec: dict[str, Any]) -> str:
    """One attempt at a time per test (its key); notes its start and holds its permit `seconds`."""
    note(spec["key"], tag=spec["tag"], started=shared_now())
    time.sleep(spec["seconds"])
    return spec["tag"]


@workflow.defn()
def wf_prioritized(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[str]:
    """`first` and the calls of `calls` ([tag, priority or None]) are scheduled at once, in that order:
    `first` takes the permit and holds it `hold` seconds, the rest wait for it."""
    first = ctx.start_activity(one_at_a_time, {**spec, "tag": "first", "seconds": spec["hold"]})
    rest = [ctx.start_activity(one_at_a_time, {**spec, "tag": tag}, priority=priority)
            for tag, priority in spec["calls"]]
    return ctx.wait_all([first, *rest])


@workflow.defn()
def wf_prioritized_chain(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[str]:
    """`n` calls one after the other, tagged with `tag` and their index (the run's priority applies)."""
    return [ctx.execute_activity(one_at_a_time, {**spec, "tag": f"{spec['tag']}{i}"}) for i in range(spec["n"])]


@workflow.activity()
def sleepy(spec: dict[str, Any]) -> int:
    """Sleeps `seconds` on the attempts listed in `slow_attempts` (all when absent)."""
    info = workflow.activity_info()
    note(spec["key"], attempt=info.attempt)
    if info.attempt in spec.get("slow_attempts", [info.attempt]):
        time.sleep(spec["seconds"])
    return info.attempt


@workflow.activity()
def beating(spec: dict[str, Any]) -> dict[str, Any]:
    """Attempt 1 heartbeats twice, then goes silent past its heartbeat timeout; later attempts return
    the details the last heartbeat left them."""
    info = workflow.activity_info()
    note(spec["key"], attempt=info.attempt, details=info.heartbeat_details)
    if info.attempt == 1:
        workflow.heartbeat({"done": 1})
        time.sleep(0.05)
        workflow.heartbeat({"done": 2})
        time.sleep(spec["hang"])
        return {"attempt": 1, "late": True}
    return {"attempt": info.attempt, "details": info.heartbeat_details}


@workflow.activity()
def unprintable() -> None:
    raise Unprintable()


@workflow.activity()
def unencodable_result() -> Any:
    return object()


@workflow.activity()
def cleanup(key: str) -> str:
    note(key, event="cleanup")
    return "cleaned"


@workflow.activity()
def append_line(spec: dict[str, Any]) -> str:
    """Appends `line` to the file `path`: a side effect a test can count across processes."""
    with open(spec["path"], "a") as f:
        f.write(spec["line"] + "\n")
    return spec["line"]


@workflow.activity()
def slow_line(spec: dict[str, Any]) -> str:
    """Writes a `started` line, sleeps when run by process `hang_pid`, then writes `done`."""
    info = workflow.activity_info()
    with open(spec["path"], "a") as f:
        f.write(f"started {info.attempt} {info.idempotency_key}\n")
    if spec.get("hang_pid") == os.getpid():
        time.sleep(60)
    with open(spec["path"], "a") as f:
        f.write(f"done {info.attempt} {info.idempotency_key}\n")
    return info.idempotency_key


fake_llm = workflow.llm_activity(lambda prompt: f"LLM: {prompt.upper()}", name="tests_fake_llm")


def _calculator(name: str, args: dict[str, Any]) -> Any:
    return {"tool": name, "sum": sum(args.values())}


calculator = workflow.tool_activity(_calculator, name="tests_calculator")

HUMANS = workflow.InMemoryHumanManager()
ask_human = workflow.human_activity(HUMANS, name="tests_notify_human")


# --- workflows ---------------------------------------------------------------------------------------------
@workflow.defn()
def wf_echo(ctx: workflow.WorkflowContext, value: Any) -> Any:
    return ctx.execute_activity(echo, value)


@workflow.defn()
def wf_by_name(ctx: workflow.WorkflowContext, value: Any) -> Any:
    return ctx.execute_activity("echo", value)


@workflow.defn()
def wf_no_input(ctx: workflow.WorkflowContext) -> str:
    return "no input needed"


@workflow.defn()
def wf_wait_signal(ctx: workflow.WorkflowContext, name: str | None) -> Any:
    return ctx.receive_signal(name or "go").receive()


@workflow.defn()
def wf_collect(ctx: workflow.WorkflowContext, n: int) -> list[Any]:
    """Takes its first step, then collects `n` signals "msg", in arrival order."""
    ctx.execute_activity(echo, None)
    channel = ctx.receive_signal("msg")
    return [channel.receive() for _ in range(n)]


@workflow.defn()
def wf_progress(ctx: workflow.WorkflowContext, start: int) -> Any:
    state = {"step": "started", "count": start}
    ctx.set_query_handler("progress", lambda: dict(state))
    ctx.set_query_handler("add", lambda a, b: a + b + state["count"])
    ctx.set_query_handler("broken", lambda: 1 / 0)
    ctx.execute_activity(echo, None)
    state["step"] = "waiting"
    payload = ctx.receive_signal("go").receive()
    state["step"] = "done"
    return payload


@workflow.defn()
def wf_cancellable(ctx: workflow.WorkflowContext, key: str) -> str:
    try:
        ctx.receive_signal("never").receive()
    except workflow.WorkflowCancelled:
        ctx.execute_activity(cleanup, key)
        raise
    return "not cancelled"


@workflow.defn()
def wf_fail(ctx: workflow.WorkflowContext, message: str) -> None:
    raise workflow.ApplicationError(message)


@workflow.defn()
def wf_crash(ctx: workflow.WorkflowContext) -> None:
    raise ZeroDivisionError("division by zero in workflow code")


@workflow.defn()
def wf_bad_result(ctx: workflow.WorkflowContext) -> Any:
    return {"handle": object()}


@workflow.defn()
def wf_sleep(ctx: workflow.WorkflowContext, seconds: float) -> str:
    ctx.sleep(seconds)
    return "woke"


@workflow.defn()
def wf_retry(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    policy = fast_retry(spec["max_attempts"], tuple(spec.get("non_retryable", ())))
    try:
        return ctx.execute_activity(flaky, spec, retry=policy)
    except workflow.ActivityError as exc:
        return {"error": exc.cause.type, "message": exc.cause.message, "attempts": exc.attempts}


@workflow.defn()
def wf_retry_after(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    policy = workflow.RetryPolicy(max_attempts=spec["max_attempts"], initial_interval=0.01, max_interval=0.05,
                                  retry_after_counts=spec.get("counts", True))
    try:
        return ctx.execute_activity(rate_limited, spec, retry=policy)
    except workflow.ActivityError as exc:
        return {"error": exc.cause.type, "attempts": exc.attempts}


@workflow.defn()
def wf_limited(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[int]:
    return ctx.wait_all([ctx.start_activity(limited, {**spec, "i": i}) for i in range(spec["n"])])


@workflow.defn()
def wf_retry_uncaught(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    return ctx.execute_activity(flaky, spec, retry=fast_retry(spec["max_attempts"]))


@workflow.defn()
def wf_activity_timeout(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    try:
        return ctx.execute_activity(sleepy, spec, timeout=spec["timeout"], retry=fast_retry(spec["max_attempts"]))
    except workflow.ActivityError as exc:
        return {"error": exc.cause.type, "message": exc.cause.message, "attempts": exc.attempts}


@workflow.defn()
def wf_heartbeat(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    return ctx.execute_activity(beating, spec, heartbeat_timeout=spec["heartbeat_timeout"], retry=fast_retry(3))


@workflow.defn()
def wf_fanout(ctx: workflow.WorkflowContext, n: int) -> list[int]:
    return ctx.wait_all([ctx.start_activity(add_one, i) for i in range(n)])


@workflow.defn()
def wf_race(ctx: workflow.WorkflowContext, seconds: float) -> dict[str, Any]:
    timer, channel = ctx.timer(seconds), ctx.receive_signal("go")
    first = ctx.wait_any(timer, channel)
    if first is channel:
        return {"winner": "signal", "payload": channel.receive()}
    return {"winner": "timer"}


@workflow.defn()
def wf_receive_timeout(ctx: workflow.WorkflowContext, seconds: float) -> Any:
    try:
        return ctx.receive_signal("go").receive(timeout=seconds)
    except TimeoutError as exc:
        return f"timeout: {exc}"


def _side_effect_value(key: str) -> str:
    note(key, event="side_effect")
    return f"computed once for {key}"


@workflow.defn()
def wf_side_effect(ctx: workflow.WorkflowContext, key: str) -> dict[str, Any]:
    value = ctx.side_effect(lambda: _side_effect_value(key))
    first = {"value": value, "now": ctx.now().timestamp(), "random": ctx.random(), "uuid": str(ctx.uuid4())}
    ctx.set_query_handler("first", lambda: first)
    ctx.receive_signal("go").receive()
    return first


@workflow.defn()
def wf_parent(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    if spec.get("fail"):
        try:
            ctx.execute_child_workflow(wf_fail, "child broke", id=spec.get("child_id"))
        except workflow.ChildWorkflowError as exc:
            return {"error": exc.cause.type, "message": exc.cause.message}
        return "unreachable"
    return ctx.execute_child_workflow(wf_echo, spec["value"], id=spec.get("child_id"))


@workflow.defn()
def wf_continue(ctx: workflow.WorkflowContext, n: int) -> dict[str, Any]:
    ctx.execute_activity(echo, n)
    if n < 3:
        ctx.continue_as_new(n + 1)
    return {"n": n, "run_id": ctx.run_id}


@workflow.defn()
def wf_agent(ctx: workflow.WorkflowContext, prompt: str) -> dict[str, Any]:
    text = ctx.execute_activity(fake_llm, prompt)
    tool = ctx.execute_activity(calculator, {"name": "add", "args": {"a": 1, "b": 2}})
    return {"text": text, "tool": tool}


@workflow.defn()
def wf_human(ctx: workflow.WorkflowContext, description: str) -> dict[str, Any]:
    request = workflow.HumanRequest(tool_name="refund", description=description, input={"amount": 10},
                                    risk_level="irreversible", confidence=0.4)
    response = ask_human(ctx, request)
    return {"decision": response.decision, "feedback": response.feedback, "modified": response.modified_input}


@workflow.defn()
def wf_unknown_activity(ctx: workflow.WorkflowContext) -> Any:
    return ctx.execute_activity("tests_no_such_activity", 1)


@workflow.defn()
def wf_unprintable(ctx: workflow.WorkflowContext) -> Any:
    return ctx.execute_activity(unprintable, retry=fast_retry(1))


@workflow.defn()
def wf_unencodable_activity_result(ctx: workflow.WorkflowContext) -> Any:
    return ctx.execute_activity(unencodable_result, retry=fast_retry(3))


@workflow.defn()
def wf_hooks(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    """One of everything a hook observes: an activity retried once, a signal, then the end."""
    ctx.execute_activity(flaky, spec, retry=fast_retry(3))
    payload = ctx.receive_signal("go").receive()
    if payload == "fail":
        raise workflow.ApplicationError("asked to fail")
    return payload


# --- crash recovery ------------------------------------------------------------------------------------------
@workflow.defn()
def wf_crash_signal(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    ctx.execute_activity(append_line, {"path": spec["path"], "line": "before signal"})
    payload = ctx.receive_signal("go").receive()
    ctx.execute_activity(append_line, {"path": spec["path"], "line": "after signal"})
    return payload


@workflow.defn()
def wf_crash_activity(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    return ctx.execute_activity(slow_line, spec, retry=fast_retry(3))


@workflow.defn()
def wf_crash_timer(ctx: workflow.WorkflowContext, seconds: float) -> float:
    ctx.sleep(seconds)
    return ctx.now().timestamp()


# --- non-determinism: the original code; tests register a changed one under this name elsewhere ---------------
@workflow.defn()
def wf_versioned(ctx: workflow.WorkflowContext, value: Any) -> Any:
    first = ctx.execute_activity(echo, value)
    payload = ctx.receive_signal("go").receive()
    return [first, payload, ctx.execute_activity(add_one, 1)]


@workflow.defn()
def wf_versioned_timer(ctx: workflow.WorkflowContext, seconds: float) -> Any:
    ctx.execute_activity(echo, None)
    ctx.sleep(seconds)
    return "slept"


# --- scale --------------------------------------------------------------------------------------------------
@workflow.defn()
def wf_parked(ctx: workflow.WorkflowContext, n: int) -> Any:
    """Records that it ran (a marker, so the store shows it parked), then waits for "go"."""
    ctx.side_effect(lambda: n)
    return n + ctx.receive_signal("go").receive()


@workflow.defn()
def wf_parent_close(ctx: workflow.WorkflowContext, children: list[list[str]]) -> str:
    """Starts a `wf_cancellable` child per [child id, parent-close policy] ("" for the default), then
    waits for the signal "finish": closing it applies each open child's policy."""
    for child_id, policy in children:
        if policy:
            ctx.start_child_workflow(wf_cancellable, child_id, id=child_id, parent_close_policy=policy)
        else:
            ctx.start_child_workflow(wf_cancellable, child_id, id=child_id)
    ctx.receive_signal("finish").receive()
    return "parent done"


@workflow.defn()
def wf_gather(ctx: workflow.WorkflowContext, n: int) -> list[Any]:
    """Collects `n` signals "msg" (it may get them before its code first runs), in arrival order."""
    channel = ctx.receive_signal("msg")
    return [channel.receive() for _ in range(n)]


@workflow.defn()
def wf_counter(ctx: workflow.WorkflowContext, start: int) -> int:
    """A count changed by updates: `add` (validated: positive amounts only), `add_slowly` (through the
    activity `add_one`), `fail` (its handler raises), `finish` (ends the run with the count)."""
    state = {"count": start, "done": False}

    def positive(n: int) -> None:
        if n <= 0:
            raise workflow.ApplicationError(f"amount must be positive, got {n}")

    def add(n: int) -> int:
        state["count"] += n
        return state["count"]

    def add_slowly(n: int) -> int:
        state["count"] += ctx.execute_activity(add_one, n) - 1
        return state["count"]

    def fail() -> None:
        raise workflow.ApplicationError("the handler failed")

    def finish() -> int:
        state["done"] = True
        return state["count"]

    def held() -> str:
        ctx.wait_condition(lambda: bool(state["done"]))
        return "released"

    ctx.set_update_handler("add", add, validator=positive)
    ctx.set_update_handler("add_slowly", add_slowly, validator=positive)
    ctx.set_update_handler("fail", fail)
    ctx.set_update_handler("finish", finish)
    ctx.set_update_handler("held", held)
    ctx.set_query_handler("count", lambda: state["count"])
    ctx.wait_condition(lambda: bool(state["done"]))
    return state["count"]


# --- async def activities: run on an event loop, many attempts in flight -------------------------------------
@workflow.activity()
async def async_double(spec: dict[str, Any]) -> dict[str, Any]:
    """Awaits `seconds`, then returns twice `value` with what `activity_info()` said inside the coroutine."""
    info = workflow.activity_info()
    await asyncio.sleep(spec.get("seconds", 0.0))
    return {"value": spec["value"] * 2, "attempt": info.attempt, "workflow_id": info.workflow_id}


@workflow.activity()
async def async_beating(spec: dict[str, Any]) -> dict[str, Any]:
    """`beating` as a coroutine: attempt 1 heartbeats twice, then goes silent past its heartbeat timeout."""
    info = workflow.activity_info()
    note(spec["key"], attempt=info.attempt, details=info.heartbeat_details)
    if info.attempt == 1:
        workflow.heartbeat({"done": 1})
        await asyncio.sleep(0.05)
        workflow.heartbeat({"done": 2})
        try:
            await asyncio.sleep(spec["hang"])
        except asyncio.CancelledError:
            note(spec["key"], event="cancelled", attempt=info.attempt)
            raise
        return {"attempt": 1, "late": True}
    return {"attempt": info.attempt, "details": info.heartbeat_details}


@workflow.activity()
async def async_waiting(spec: dict[str, Any]) -> str:
    """Notes that it started, then waits `seconds` (heartbeating every 0.2 s, as Temporal delivers a
    cancellation through heartbeats), noting a cancellation of its coroutine before passing it on."""
    info = workflow.activity_info()
    note(spec["key"], event="started", attempt=info.attempt)
    try:
        for _ in range(int(spec["seconds"] / 0.2)):
            workflow.heartbeat()
            await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        note(spec["key"], event="cancelled", attempt=info.attempt)
        raise
    note(spec["key"], event="finished", attempt=info.attempt)
    return "finished"


@workflow.defn()
def wf_async(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return ctx.wait_all([ctx.start_activity(async_double, {**spec, "value": i}) for i in range(spec["n"])])


@workflow.defn()
def wf_async_heartbeat(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    return ctx.execute_activity(async_beating, spec, heartbeat_timeout=spec["heartbeat_timeout"],
                                retry=fast_retry(3))


@workflow.defn()
def wf_async_timeout(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    try:
        return ctx.execute_activity(async_waiting, spec, timeout=spec["timeout"], retry=fast_retry(1))
    except workflow.ActivityError as exc:
        return {"error": exc.cause.type, "message": exc.cause.message}


@workflow.defn()
def wf_async_cancelled(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    return ctx.execute_activity(async_waiting, spec, heartbeat_timeout=spec.get("heartbeat_timeout"))


# --- reset (issue 17 item 5): a step that a "bad deploy" breaks, and that a fix mends --------------------
def set_broken(key: str, steps: list[int]) -> None:
    """Steps `steps` of the runs keyed `key` fail (the bad deploy); [] mends them (the fix)."""
    if SHARED_URL:
        from beluga import codec

        _shared().set(f"test:broken:{key}", codec.encode(steps))
        return
    with _LOCK:
        BROKEN[key] = list(steps)


def _broken(key: str) -> list[int]:
    if SHARED_URL:
        from beluga import codec

        raw = _shared().get(f"test:broken:{key}")
        return [] if raw is None else list(codec.decode(raw))
    with _LOCK:
        return list(BROKEN.get(key, []))


BROKEN: dict[str, list[int]] = {}


@workflow.activity()
def numbered_step(spec: dict[str, Any]) -> int:
    """Step `n` of a run; fails while step `n` is broken for the run's key."""
    note(spec["key"], n=spec["n"], run_id=workflow.activity_info().run_id)
    if spec["n"] in _broken(spec["key"]):
        raise ValueError(f"step {spec['n']} is broken")
    return int(spec["n"])


@workflow.defn()
def wf_steps(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[Any]:
    """Steps 1..`steps`, one after another; with `signal_after`, waits for signal "go" after that step."""
    out: list[Any] = []
    for n in range(1, spec["steps"] + 1):
        out.append(ctx.execute_activity(numbered_step, {"key": spec["key"], "n": n}, retry=fast_retry(2)))
        if n == spec.get("signal_after"):
            out.append(ctx.receive_signal("go").receive())
    return out


@workflow.defn()
def wf_timer_across_reset(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[Any]:
    """A timer runs while a signal arrives; then a step. Reset to the signal: the timer is in flight there."""
    timer = ctx.timer(spec["seconds"])
    payload = ctx.receive_signal("go").receive()
    timer.result()
    return [payload, ctx.execute_activity(numbered_step, {"key": spec["key"], "n": 1}, retry=fast_retry(2))]


@workflow.defn()
def wf_attempt_across_reset(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[Any]:
    """A slow attempt runs while a quick step ends; then a step that can break. Reset to the quick step's
    end: the slow attempt is in flight there."""
    slow = ctx.start_activity(sleepy, {"key": f"{spec['key']}-slow", "seconds": spec["seconds"], "slow_attempts": [1]},
                              retry=fast_retry(3))
    quick = ctx.execute_activity(numbered_step, {"key": spec["key"], "n": 1}, retry=fast_retry(2))
    attempt = slow.result()
    return [quick, attempt, ctx.execute_activity(numbered_step, {"key": spec["key"], "n": 2}, retry=fast_retry(2))]


@workflow.defn()
def wf_tagged(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    """Search attributes (issue 17 item 4): what it was started with, an upsert after an activity (so the
    fleet records it on an attempt's report), a signal, then an upsert that removes one attribute."""
    seen = {"attrs": ctx.search_attributes, "memo": ctx.memo}
    ctx.execute_activity(echo, 1)
    ctx.upsert_search_attributes(stage="paid", amount=spec.get("amount", 1))
    ctx.receive_signal("go").receive()
    ctx.upsert_search_attributes({"stage": "shipped", "vip": None})
    return {**seen, "after": ctx.search_attributes}


@workflow.defn()
def wf_bad_upsert(ctx: workflow.WorkflowContext, value: Any) -> Any:
    try:
        ctx.upsert_search_attributes(bad=value)
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


@workflow.defn()
def wf_tagged_continue(ctx: workflow.WorkflowContext, n: int) -> Any:
    """Upserts, then continues as new: the next run starts with the attributes and memo this one had."""
    if n == 0:
        ctx.upsert_search_attributes(stage="first")
        ctx.continue_as_new(1)
    return {"attrs": ctx.search_attributes, "memo": ctx.memo}
