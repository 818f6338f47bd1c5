"""The executor interface every provider implements, and the handle users hold on a run."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from beluga.core.errors import (
    SerializationError,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.failure import from_failure, raise_as_own
from beluga.core.records import Signal, WorkflowState, WorkflowStatus
from beluga.core.retry import Duration, seconds
from beluga.core.search import check_attributes
from beluga.executors.scheduling import Scheduling
from beluga.logs import get_logger

if TYPE_CHECKING:
    from beluga.hooks import Hooks
    from beluga.resets import ResetResult
    from beluga.schedules import ScheduleService
    from beluga.stores.base import WorkflowStore


# What `signal` raises for one signal that a batch (`signal_many`) reports instead of raising: that
# signal's own fault, not an outage's (a bad name, payload or id; a run that is closed or absent).
REFUSED_SIGNAL = (WorkflowNotFound, WorkflowNotRunning, SerializationError, ValueError, TypeError)


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    id: str | None = None
    input: Any = None
    timeout: Duration | None = None
    queue: str | None = None
    # Makes `execute` idempotent where a call can fail after taking effect (the fleet): a retry with the
    # same request id returns the run the first call started. A new one is made when not given.
    request_id: str | None = None
    # Context to propagate, recorded with the run and handed to every activity attempt: W3C trace context
    # (`traceparent`, `tracestate`), as `with_tracing()` fills it in. Plain strings.
    headers: dict[str, str] | None = None
    # Who starts the run (an operator, `user@host`; `beluga retry` passes its caller): recorded in the
    # run's `workflow_started` event. None records nothing.
    identity: str | None = None
    # Typed business keys the run is listed by (`WorkflowFilter(where=...)`, `beluga list --where`): str
    # (keyword), int, float, bool or aware datetime values (beluga/core/search.py), checked here.
    search_attributes: dict[str, Any] | None = None
    # A payload shown with the run (`beluga show`, the console), never indexed; checked as an input is.
    memo: Any = None
    # 1 (highest) to 5 (lowest), 3 when None, as Temporal's priority keys: the priority of the run's
    # activity calls that set none, which orders them among the attempts waiting for a permit of a limit
    # and in a broker queue (see beluga/core/priority.py).
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.search_attributes is not None:
            object.__setattr__(self, "search_attributes", check_attributes(self.search_attributes) or None)


@dataclass(frozen=True, slots=True)
class Config:
    store: WorkflowStore | None = None
    hooks: Hooks | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class DurableExecutor(Scheduling, ABC):
    @abstractmethod
    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        """Start a run of `workflow` (a function or its registered name)."""

    @abstractmethod
    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        """Durably deliver `signal` to the open run of `workflow_id`. `identity` (here and on `cancel`,
        `terminate`): who asks, recorded with the event and logged; None records nothing."""

    def signal_many(self, signals: Iterable[tuple[str, Signal]], *, identity: str | None = None
                    ) -> list[Exception | None]:
        """Deliver each `(workflow_id, signal)` as `signal` does, one outcome per pair, in order: None when
        delivered, else the error `signal` would have raised for it (`WorkflowNotFound`,
        `WorkflowNotRunning`, a bad name or payload), so that one closed run does not hide what happened to
        the rest. An outage (`ServiceUnavailable`) is raised: which signals went out is then unknown, and a
        retry with the same signals delivers each once when each carries a `request_id`. Executors that
        can send many at once (the fleet: pipelined, one wake per shard) override this."""
        outcomes: list[Exception | None] = []
        for workflow_id, signal in signals:
            try:
                self.signal(workflow_id, signal, identity=identity)
                outcomes.append(None)
            except REFUSED_SIGNAL as exc:
                outcomes.append(exc)
        return outcomes

    def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> WorkflowHandle:
        """Deliver `signal` to the open run of `options.id`, or start that run (as `execute`) with `signal`
        as its first input, in one atomic step: callers racing on one id make one run that holds every
        signal. `options.id` is required; `options.identity` is recorded with the signal too."""
        raise NotImplementedError(f"{type(self).__name__} cannot signal-with-start")

    def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
               timeout: Duration | None = None, identity: str | None = None) -> Any:
        """Send update `name` to the open run: its validator (`ctx.set_update_handler`) runs first,
        read-only, and may reject it (its error is raised here; nothing is recorded). Accepted, it is
        recorded and its handler runs as workflow code; with `wait` this returns the handler's result or
        raises its error (`TimeoutError` after `timeout`), else it returns the update id once accepted.
        `update_id` (made up when not given) deduplicates: a retry with the same id gets the first
        outcome and is recorded once."""
        raise NotImplementedError(f"{type(self).__name__} cannot send updates")

    @abstractmethod
    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        """Answer a query: built-in `"status"` and `"result"`, or a handler the workflow set."""

    @abstractmethod
    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        """Request cancellation; the workflow sees `WorkflowCancelled` at its next blocking call."""

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        """Close the open run at once, `canceled` with a `Terminated` error naming `reason`. No workflow
        code runs (no cleanup), so it also closes a run whose code is gone or no longer matches."""
        raise NotImplementedError(f"{type(self).__name__} cannot terminate runs")

    def reset(self, workflow_id: str, to: int | str = "last-good", *, identity: str | None = None,
              reapply_signals: bool = True) -> ResetResult:
        """Start a new run of `workflow_id` that replays the current run's history up to the workflow-task
        boundary `to` (an event id, "first": right after the start, or "last-good": before the step that
        led to the first failure) and continues from there on the current code. An open run is terminated
        first; the old run is kept as `<id>/runs/<n>` (as `beluga retry` keeps it). Signals recorded after
        the point are applied again (`reapply_signals`); the result says what was thrown away. A point
        that is not a boundary raises `ResetError` and changes nothing (beluga/core/reset.py)."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset runs")

    @abstractmethod
    def describe(self, workflow_id: str) -> WorkflowState:
        """The current run's state, history included; `WorkflowNotFound` when there is none."""

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        state = self.describe(workflow_id)
        return WorkflowHandle(self, workflow_id, state.run_id)

    def close(self) -> None:  # noqa: B027  (most executors hold nothing to release)
        """Stop background work; runs stay in the store and resume in the next executor."""

    def __enter__(self) -> DurableExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self, workflow_id: str) -> WorkflowState:
        """The current run without its history; executors whose store can skip reading it override."""
        return replace(self.describe(workflow_id), history=())

    # How handles wait: executors that can be told when a run closes override this.
    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            state = self.summary(workflow_id)
            if not state.status.is_open:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {workflow_id} still running after {timeout:g}s")
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.2)


class StoreBackedExecutor(DurableExecutor):
    """An executor whose runs are read straight from `self.store`, in any process."""

    store: WorkflowStore
    _schedules: ScheduleService | None = None

    def schedule_service(self) -> ScheduleService:
        """Schedules kept in this executor's store, their runs started through `execute`."""
        if self._schedules is None:
            from beluga.schedules import ExecutorRuns, ScheduleService

            self._schedules = ScheduleService(self.store.schedules(), ExecutorRuns(self), self.schedule_clock)
        return self._schedules

    def schedule_clock(self) -> float:
        return time.time()

    def describe(self, workflow_id: str) -> WorkflowState:
        state = self.store.load(workflow_id)
        if state is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        return state

    def summary(self, workflow_id: str) -> WorkflowState:
        state = self.store.load_summary(workflow_id)
        if state is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        return state

    def builtin_query(self, workflow_id: str, query_type: str) -> Any:
        """`"status"` (a `WorkflowStatus`) and `"result"` (a completed run's result, else None) answer
        for any run, closed ones too, from the store alone."""
        state = self.summary(workflow_id)
        if query_type == "status":
            return state.status
        return state.result if state.status is WorkflowStatus.COMPLETED else None


BUILTIN_QUERIES = ("status", "result")
_audit = get_logger("beluga.audit")


def log_write(action: str, workflow_id: str, identity: str | None, detail: str = "") -> None:
    """The one INFO line an operator's write to a run leaves (signal, cancel, terminate, retry): the run,
    the action and who asked. `detail` names what was sent (a signal's name, a reason), never a payload."""
    _audit.info("%s workflow %s by %s%s", action, workflow_id, identity or "an unnamed caller",
                f": {detail}" if detail else "")


class WorkflowHandle:
    """A reference to a run that any process can hold; it reads everything from the executor's store."""

    def __init__(self, executor: DurableExecutor, workflow_id: str, run_id: str) -> None:
        self._executor = executor
        self.id = workflow_id
        self.run_id = run_id

    def status(self) -> WorkflowStatus:
        return self._executor.query(self.id, "status")

    def describe(self) -> WorkflowState:
        return self._executor.describe(self.id)

    def result(self, timeout: Duration | None = None) -> Any:
        """The run's result (following continue-as-new to the final run); raises `WorkflowFailed`,
        `WorkflowCancelled`, or `TimeoutError` when `timeout` passes first."""
        state = self._executor.wait_closed(self.id, seconds(timeout))
        return outcome(state)

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"


def update_outcome(done: dict[str, Any]) -> Any:
    """An ended update's answer (its `update_completed` attrs): its result, or its error raised."""
    if "error" in done:
        raise_as_own(done["error"] or {})
    return done.get("result")


def update_gone(workflow_id: str, update_id: str) -> WorkflowNotRunning:
    """What a caller waiting on an update gets when the run closed before the update's handler ended."""
    return WorkflowNotRunning(f"workflow {workflow_id} closed before update {update_id!r} completed")


def outcome(state: WorkflowState) -> Any:
    """A closed run's result, or the error `handle.result()` raises for it."""
    status = state.status
    if status is WorkflowStatus.COMPLETED:
        return state.result
    if status is WorkflowStatus.CANCELED:
        raise WorkflowCancelled(f"workflow {state.workflow_id} was cancelled")
    cause = from_failure(state.error) if state.error else None
    if status is WorkflowStatus.TIMED_OUT:
        raise WorkflowFailed(f"workflow {state.workflow_id} timed out", cause)
    if status is WorkflowStatus.FAILED:
        raise WorkflowFailed(f"workflow {state.workflow_id} failed: {cause}", cause)
    raise WorkflowNotFound(f"workflow {state.workflow_id} is still running")
