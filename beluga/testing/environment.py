"""A test environment for workflows: the in-process executor on an in-memory store, with a clock that
skips ahead, so a workflow that sleeps for days is tested in milliseconds. No Redis, no worker.

    with WorkflowEnvironment() as env:
        handle = env.execute(order_workflow, "ORD-1")
        env.signal(handle.id, workflow.Signal("approve", "approved"))
        assert handle.result(timeout=10) == "order ORD-1 processed"

Time skipping works as Temporal's test server does it: time is the real clock plus an offset. While a
test waits for a result (`handle.result()`), or calls `env.sleep(duration)`, and the engine has nothing
to do (no activity attempt queued or running, nothing in its inbox), the clock jumps to the next due
time the engine has armed — a durable timer, a retry backoff, an activity or workflow timeout — which
then fires at once. Between such calls time runs at its normal pace, so a test can start a run that
waits for a signal with a timeout of an hour and send the signal before that hour is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from beluga.core.records import Signal, WorkflowState
from beluga.core.retry import Duration, seconds
from beluga.executors.base import WorkflowHandle, WorkflowOptions
from beluga.hooks import Hooks
from beluga.inprocess.executor import InProcessExecutor
from beluga.inprocess.records import Msg, Nudge
from beluga.stores.base import WorkflowStore
from beluga.stores.memory import InMemoryStore
from beluga.testing.replayer import import_modules


class TestClock:
    """Epoch seconds: the real clock plus an offset that only grows. Thread-safe; callable."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: float | datetime | None = None) -> None:
        if isinstance(start, datetime):
            start = (start if start.tzinfo else start.replace(tzinfo=timezone.utc)).timestamp()
        self._offset = 0.0 if start is None else float(start) - time.time()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self._offset

    def advance_to(self, when: float) -> None:
        """Move the clock forward to `when` (never back)."""
        with self._lock:
            now = time.time() + self._offset
            if when > now:
                self._offset += when - now

    def advance(self, duration: Duration) -> None:
        self.advance_to(self() + (seconds(duration) or 0.0))


class _SkippingExecutor(InProcessExecutor):
    """The in-process executor whose result waits let the environment skip time."""

    _env: WorkflowEnvironment

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        if not self._env.time_skipping:
            return super().wait_closed(workflow_id, timeout)
        with self._env._auto():
            return super().wait_closed(workflow_id, timeout)


class WorkflowEnvironment:
    """The in-process executor (`env.executor`) on `store` (default: a fresh `InMemoryStore`), driven by
    a `TestClock` (`env.clock`) that starts at `start_time` (default: now). `imports` are imported first
    (modules whose decorators register workflows and activities). Every executor method is available on
    the environment itself: `env.signal(...)`, `env.query(...)`, `env.describe(...)`, ...

    `time_skipping=False` keeps the clock real (it can still be moved with `env.sleep()`)."""

    __test__ = False

    def __init__(self, *, store: WorkflowStore | None = None, imports: str | Iterable[str] = (),
                 start_time: float | datetime | None = None, time_skipping: bool = True,
                 hooks: Hooks | None = None, workers: int = 4, **executor_options: Any) -> None:
        import_modules(imports)
        self.clock = TestClock(start_time)
        self.time_skipping = time_skipping
        self.store = store if store is not None else InMemoryStore()
        self._cond = threading.Condition()
        self._waiting_results = 0                 # result waits in progress: skip to whatever is due next
        self._sleep_until: float | None = None    # env.sleep(): skip up to here
        self._slept = False
        executor = _SkippingExecutor(self.store, hooks, workers=workers, clock=self.clock, **executor_options)
        executor._env = self
        executor._engine.on_idle = self._on_idle
        self.executor: InProcessExecutor = executor

    # --- running workflows ------------------------------------------------------------------------------
    def execute(self, workflow: Any, input: Any = None, *, id: str | None = None, timeout: Duration | None = None,
                options: WorkflowOptions | None = None) -> WorkflowHandle:
        """Start a run: `env.execute(order_workflow, "ORD-1")` (or pass `options=WorkflowOptions(...)`)."""
        return self.executor.execute(workflow, options or WorkflowOptions(id=id, input=input, timeout=timeout))

    def signal(self, workflow_id: str, signal: Signal | str, payload: Any = None) -> None:
        """`env.signal(id, Signal("approve", "yes"))`, or `env.signal(id, "approve", "yes")`."""
        self.executor.signal(workflow_id, signal if isinstance(signal, Signal) else Signal(signal, payload))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "executor":
            raise AttributeError(name)
        return getattr(self.executor, name)

    # --- time ---------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The environment's current time (what `ctx.now()` of a run reacting now would see), in UTC."""
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def sleep(self, duration: Duration, *, timeout: float = 60.0) -> None:
        """Let `duration` pass at once: every timer, backoff and timeout due within it fires, in order,
        each run reacting as it would have at that time. Waits (at most `timeout` real seconds) for the
        activities that this sets off, as time cannot skip while one runs."""
        target = self.clock() + (seconds(duration) or 0.0)
        with self._cond:
            self._sleep_until, self._slept = target, False
        self._wake()
        deadline = time.monotonic() + timeout
        try:
            with self._cond:
                while not self._slept:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"env.sleep(): the engine was still busy after {timeout:g}s "
                                           "(a long activity?); time skips only while nothing runs")
                    self._cond.wait(min(left, 0.1))
        finally:
            with self._cond:
                self._sleep_until = None

    @contextmanager
    def _auto(self) -> Iterator[None]:
        """While a test waits for a result, time skips to whatever is due next."""
        with self._cond:
            self._waiting_results += 1
        self._wake()
        try:
            yield
        finally:
            with self._cond:
                self._waiting_results -= 1

    def _wake(self) -> None:
        self.executor._engine.post(Msg("", None, Nudge()))  # the coordinator looks again at once

    def _on_idle(self, next_due: float | None) -> None:
        """Called by the engine's coordinator thread when it has nothing to do but wait for `next_due`."""
        with self._cond:
            target = self._sleep_until
            if target is not None and not self._slept:
                if next_due is not None and next_due <= target:
                    self.clock.advance_to(next_due)  # the coordinator fires it as soon as this returns
                    return
                self.clock.advance_to(target)
                self._slept = True                   # everything due up to the target has been handled
                self._cond.notify_all()
            if self._waiting_results and self.time_skipping and next_due is not None:
                self.clock.advance_to(next_due)

    # --- lifecycle ----------------------------------------------------------------------------------------
    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
