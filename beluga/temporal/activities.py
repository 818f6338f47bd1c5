"""The activity side of the `temporal` executor's worker: one dynamic Temporal activity that runs any
Beluga activity (bounded by its timeouts, as on the other executors), the local activity that runs a
workflow's side effects, and what the workers of this process run, by task queue."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, exceptions
from temporalio.common import RawValue

from beluga import codec
from beluga.activity import ActivityInfo, run_async_with_info, run_with_info
from beluga.core.definitions import Registry
from beluga.core.errors import ConfigurationError
from beluga.core.failure import attempt_timed_out, no_heartbeat, to_failure
from beluga.core.retry import Retry, decide_retry
from beluga.hooks import Hooks
from beluga.temporal.failures import application_error, policy_of

SIDE_EFFECT = "__beluga_side_effect"
NO_TIMEOUT = timedelta(days=3650)   # Temporal needs an attempt timeout; a Beluga call without one has none

_side_effects: dict[str, Callable[[], Any]] = {}
_side_effect_ids = itertools.count()
_side_effect_lock = threading.Lock()


def raw_value(value: RawValue) -> Any:
    return codec.decode(bytes(value.payload.data))


@dataclass(frozen=True)
class WorkerConfig:
    registry: Registry
    hooks: Hooks
    check: Callable[[Any], Any]


# What the workers of this process run, by task queue. Temporal instantiates the workflow class itself (and
# refuses local classes), so the class finds its worker's registry and hooks here; one configuration per
# task queue per process.
_configs: dict[str, WorkerConfig] = {}


def configure(task_queue: str, registry: Registry, hooks: Hooks, check: Callable[[Any], Any]) -> None:
    """What a worker on `task_queue` runs: `registry`, `hooks` and the payload `check`."""
    _configs[task_queue] = WorkerConfig(registry, hooks, check)


def set_hooks(task_queue: str, hooks: Hooks) -> None:
    cfg = _configs.get(task_queue)
    if cfg is not None:
        _configs[task_queue] = WorkerConfig(cfg.registry, hooks, cfg.check)


def worker_config(task_queue: str) -> WorkerConfig:
    cfg = _configs.get(task_queue)
    if cfg is None:
        raise ConfigurationError(f"no Beluga worker configured for task queue {task_queue!r} in this process")
    return cfg


def hold_side_effect(fn: Callable[[], Any]) -> str:
    """Keep `fn` for the local activity `run_side_effect` to run; returns the key it is asked for by."""
    with _side_effect_lock:
        key = f"{next(_side_effect_ids)}"
        _side_effects[key] = fn
    return key


def drop_side_effect(key: str) -> None:
    with _side_effect_lock:
        _side_effects.pop(key, None)


class _AttemptTimedOut(Exception):
    """An attempt given up by the worker at its timeout (or heartbeat timeout): `fail` is its failure."""

    def __init__(self, fail: dict[str, Any]) -> None:
        super().__init__(fail["message"])
        self.fail = fail


def _bounded(name: str, attempt: int, call: Callable[[], Any], timeout: float | None,
             heartbeat_timeout: float | None, beats: list[float]) -> Any:
    """`call()` given up at the attempt's timeout, or when `beats[0]` (the last heartbeat) is older than
    the heartbeat timeout, as the other executors do: the code keeps running on its own thread and what it
    returns late is dropped. Temporal's server times attempts out too, but its timers fire up to
    `history.timerProcessorMaxTimeShift` (1 s by default) late, and it accepts a result that arrives before
    its timer fires: without this check a slow attempt's late result would count."""
    if not timeout and not heartbeat_timeout:
        return call()
    done = threading.Event()
    outcome: list[Any] = []
    context = contextvars.copy_context()  # Temporal's activity context (heartbeats) and Beluga's

    def body() -> None:
        try:
            outcome.append((True, context.run(call)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))
        finally:
            done.set()

    start = beats[0] = time.monotonic()
    threading.Thread(target=body, name=f"beluga-activity-{name}", daemon=True).start()
    while True:
        now = time.monotonic()
        waits = []
        if timeout:
            waits.append(start + timeout - now)
        if heartbeat_timeout:
            waits.append(beats[0] + heartbeat_timeout - now)
        wait = min(waits)
        if wait <= 0 and not done.is_set():
            beats.append(-1.0)  # given up: later heartbeats are dropped
            raise _AttemptTimedOut(attempt_timed_out(name, attempt, timeout) if timeout and now - start >= timeout
                                   else no_heartbeat(name, attempt, heartbeat_timeout))
        if done.wait(max(wait, 0)):
            ok, value = outcome[0]
            if ok:
                return value
            raise value


def _limit(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None and value < NO_TIMEOUT else None


@dataclass
class _Attempt:
    """One attempt as the worker sees it: what both the thread-run and the async activity share."""

    name: str
    info: activity.Info
    cfg: WorkerConfig
    value: Any
    binfo: ActivityInfo
    beats: list[float]

    @property
    def timeouts(self) -> tuple[float | None, float | None]:
        return _limit(self.info.start_to_close_timeout), _limit(self.info.heartbeat_timeout)


def _begin(value: Any) -> _Attempt:
    info = activity.info()
    name = info.activity_type
    cfg = worker_config(info.task_queue)
    details = info.heartbeat_details
    last = codec.decode(bytes(details[0])) if details and isinstance(details[0], (bytes, bytearray)) else None
    beats = [time.monotonic()]

    def heartbeat(d: Any) -> None:
        if len(beats) == 1:  # not given up
            beats[0] = time.monotonic()
            activity.heartbeat(codec.encode(d))

    binfo = ActivityInfo(info.workflow_id or "", info.workflow_run_id or "", name, int(info.activity_id),
                         info.attempt, last, heartbeat)
    cfg.hooks.emit("on_activity_start", binfo.workflow_id, value)
    return _Attempt(name, info, cfg, value, binfo, beats)


def _succeeded(att: _Attempt, result: Any) -> bytes:
    att.cfg.check(result)
    encoded = codec.encode((att.info.attempt, result))
    att.cfg.hooks.emit("on_activity_complete", att.binfo.workflow_id, result)
    return encoded


def _failed(att: _Attempt, exc: Exception) -> exceptions.ApplicationError:
    """The error the attempt raises to Temporal."""
    fail = exc.fail if isinstance(exc, _AttemptTimedOut) else to_failure(exc)
    # Temporal's server runs the retries; the core's decision says whether there is one
    if isinstance(decide_retry(policy_of(att.info.retry_policy), fail, att.info.attempt, 0.0), Retry):
        att.cfg.hooks.emit("on_retry", att.binfo.workflow_id, fail)
    return application_error({**fail, "attempt": att.info.attempt})


@activity.defn(dynamic=True)
def run_activity(args: Sequence[RawValue]) -> bytes:
    """Any plain activity, on one of the worker's activity threads."""
    att = _begin(raw_value(args[0]) if args else None)
    try:
        defn = att.cfg.registry.activity(att.name)

        def call() -> Any:
            if defn.is_async:  # registered after the worker was built (see `async_activities`): a loop of its own
                return asyncio.run(run_async_with_info(att.binfo, lambda: defn.call(att.value)))
            return run_with_info(att.binfo, lambda: defn.call(att.value))

        result = _bounded(att.name, att.info.attempt, call, *att.timeouts, att.beats)
        return _succeeded(att, result)
    except Exception as exc:
        raise _failed(att, exc) from None


def async_activities(registry: Registry) -> list[Callable[..., Any]]:
    """A Temporal activity of each `async def` activity of `registry`, by its name: Temporal runs them on
    the worker's event loop, many at once, and delivers a cancellation (the run cancelled) to the
    coroutine, as Temporal's own async activities."""
    return [_async_activity(name) for name, defn in sorted(registry.activities.items()) if defn.is_async]


def _async_activity(name: str) -> Callable[..., Any]:
    @activity.defn(name=name)
    async def run_async_activity(payload: bytes) -> bytes:
        att = _begin(codec.decode(payload))
        try:
            defn = att.cfg.registry.activity(att.name)
            result = await _bounded_async(att, lambda: run_async_with_info(att.binfo, lambda: defn.call(att.value)))
            return _succeeded(att, result)
        except Exception as exc:
            raise _failed(att, exc) from None

    return run_async_activity


async def _bounded_async(att: _Attempt, call: Callable[[], Awaitable[Any]]) -> Any:
    """`_bounded` for a coroutine: cancelled at the attempt's timeout or heartbeat timeout (not left
    running), and when Temporal cancels the activity."""
    timeout, heartbeat_timeout = att.timeouts
    task = asyncio.ensure_future(call())
    if not timeout and not heartbeat_timeout:
        return await task
    start = att.beats[0] = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            waits = [start + timeout - now] if timeout else []
            if heartbeat_timeout:
                waits.append(att.beats[0] + heartbeat_timeout - now)
            if min(waits) <= 0 and not task.done():
                att.beats.append(-1.0)  # given up: later heartbeats are dropped
                task.cancel()
                raise _AttemptTimedOut(
                    attempt_timed_out(att.name, att.info.attempt, timeout) if timeout and now - start >= timeout
                    else no_heartbeat(att.name, att.info.attempt, heartbeat_timeout))  # type: ignore[arg-type]
            await asyncio.wait({task}, timeout=max(min(waits), 0))
            if task.done():
                return task.result()
    except asyncio.CancelledError:
        task.cancel()
        raise


@activity.defn(name=SIDE_EFFECT)
def run_side_effect(key: str) -> bytes:
    fn = _side_effects.get(key)
    if fn is None:
        raise exceptions.ApplicationError("side effect no longer known to this worker", non_retryable=True)
    return codec.encode(fn())

