"""What workflow code sees: `WorkflowContext`, its futures and signal channels.

Every method is deterministic. Blocking calls park the workflow (a greenlet switch back to the engine,
never an OS thread) until the history holds what they wait for.

The instance owns its context, and the context its signal channels; the links back (a context to its
instance, a channel to its context) are weak, so that a run dropped from memory is freed at once by
reference counting instead of waiting, with its buffers, for the cyclic garbage collector's next full
collection: with thousands of runs going through a worker's cache, that garbage grew its memory.
"""

from __future__ import annotations

import random as _random
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from beluga.core import commands as cmds
from beluga.core.definitions import activity_name, workflow_name
from beluga.core.errors import WorkflowError
from beluga.core.names import check_name
from beluga.core.priority import check_priority
from beluga.core.records import ParentClosePolicy
from beluga.core.retry import Duration, RetryPolicy, seconds
from beluga.core.search import check_attributes, merged

if TYPE_CHECKING:
    from beluga.core.instance import WorkflowInstance

T = TypeVar("T")
_UNSET: Any = object()


class Future(Generic[T]):
    """A value the history will hold: an activity's result, a timer, a child workflow's result."""

    __slots__ = ("_ctx", "_value", "_error", "_done")

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def result(self) -> T:
        """The value, parking the workflow until it is ready; raises what the operation failed with."""
        self._ctx._instance.block(self.done)
        if self._error is not None:
            raise self._error
        return self._value

    def _resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if not self._done:
            self._value, self._error, self._done = value, error, True


class SignalChannel:
    """Signals of one name, buffered in arrival order. Usable as a future in `wait_any`."""

    def __init__(self, ctx: WorkflowContext, name: str) -> None:
        self._ctx_ref = weakref.ref(ctx)  # the context holds its channels: no reference cycle
        self.name = name
        self._buffer: deque[Any] = deque()

    @property
    def _ctx(self) -> WorkflowContext:
        return _alive(self._ctx_ref)

    def done(self) -> bool:
        return bool(self._buffer)

    def try_receive(self) -> Any:
        """The next buffered payload, or None when none is waiting."""
        return self._buffer.popleft() if self._buffer else None

    def receive(self, timeout: Duration | None = None) -> Any:
        """The next payload, parking until one arrives; `TimeoutError` after `timeout`."""
        if timeout is not None and not self._buffer:
            timer = self._ctx.timer(timeout)
            self._ctx._instance.block(lambda: bool(self._buffer) or timer.done())
            if not self._buffer:
                raise TimeoutError(f"no signal {self.name!r} within {seconds(timeout):g}s")
        else:
            self._ctx._instance.block(self.done)
        return self._buffer.popleft()

    def result(self) -> Any:
        return self.receive()


class WorkflowContext:
    """The workflow's only door to the world. Use it instead of time, randomness, threads or I/O."""

    def __init__(self, instance: WorkflowInstance, workflow_id: str, run_id: str, workflow_type: str,
                 seed: int) -> None:
        self._instance_ref = weakref.ref(instance)  # the instance holds its context: no reference cycle
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        self._seed = seed
        self._rng_made: _random.Random | None = None  # made when first used: most workflows never do
        self._channels: dict[str, SignalChannel] = {}
        self._query_handlers: dict[str, Callable[..., Any]] = {}
        # name -> (handler, validator or None): `executor.update(id, name, *args)`
        self._update_handlers: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {}
        self._search_attributes: dict[str, Any] = {}  # as started, then as this code upserted them
        self.memo: Any = None  # what the run was started with (WorkflowOptions.memo)

    @property
    def _rng(self) -> _random.Random:
        if self._rng_made is None:
            self._rng_made = _random.Random(self._seed)
        return self._rng_made

    @property
    def _instance(self) -> WorkflowInstance:
        return _alive(self._instance_ref)

    # --- activities -------------------------------------------------------------------------------
    def execute_activity(self, activity: Any, input: Any = None, *, retry: RetryPolicy | None = None,
                         timeout: Duration | None = None, heartbeat_timeout: Duration | None = None,
                         queue: str | None = None, schedule_to_start_timeout: Duration | None = None,
                         priority: int | None = None) -> Any:
        """Run an activity and return its result; `ActivityError` once its retries are spent."""
        return self.start_activity(activity, input, retry=retry, timeout=timeout,
                                   heartbeat_timeout=heartbeat_timeout, queue=queue,
                                   schedule_to_start_timeout=schedule_to_start_timeout, priority=priority).result()

    def start_activity(self, activity: Any, input: Any = None, *, retry: RetryPolicy | None = None,
                       timeout: Duration | None = None, heartbeat_timeout: Duration | None = None,
                       queue: str | None = None, schedule_to_start_timeout: Duration | None = None,
                       priority: int | None = None) -> Future[Any]:
        """Schedule an activity and return its future at once (fan-out). `schedule_to_start_timeout`
        bounds how long an attempt may wait for a worker to take it (a queue that no worker consumes):
        past it the attempt fails with `TimeoutError`, and is not retried. `priority` (1 highest to 5
        lowest; the run's when None, see beluga/core/priority.py) orders its attempts among those waiting
        for a permit of a limit or in a broker queue."""
        name = activity_name(activity)
        options: dict[str, Any] = {}
        if retry is not None:
            options["retry"] = retry.to_dict()
        if timeout is not None:
            options["timeout"] = seconds(timeout)
        if heartbeat_timeout is not None:
            options["heartbeat_timeout"] = seconds(heartbeat_timeout)
        if queue is not None:
            options["queue"] = queue
        if schedule_to_start_timeout is not None:
            options["schedule_to_start_timeout"] = seconds(schedule_to_start_timeout)
        if check_priority(priority, f"the priority of activity {name!r}") is not None:
            options["priority"] = priority
        inst = self._instance
        inst.check_payload(input, f"input of activity {name!r}")
        seq = inst.next_seq()
        return inst.issue(cmds.ScheduleActivity(seq, name, input, options), Future(self))

    # --- signals, timers, waiting -----------------------------------------------------------------
    def receive_signal(self, name: str) -> SignalChannel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = SignalChannel(self, name)
        return channel

    def timer(self, duration: Duration) -> Future[None]:
        secs = seconds(duration)
        if secs is None:
            raise TypeError("a timer needs a duration: float seconds or a timedelta, not None")
        inst = self._instance
        return inst.issue(cmds.StartTimer(inst.next_seq(), secs), Future(self))

    def sleep(self, duration: Duration) -> None:
        """Durable sleep: the timer is in the history, so a restart honours the time that remains."""
        self.timer(duration).result()

    def wait_any(self, *futures: Any) -> Any:
        """The first of `futures` (in argument order) that is ready, parking until one is."""
        items = _flatten(futures)
        self._instance.block(lambda: any(f.done() for f in items))
        return next(f for f in items if f.done())

    def wait_all(self, futures: Iterable[Any]) -> list[Any]:
        """All results, in order; raises the first failure in argument order."""
        items = list(futures)
        self._instance.block(lambda: all(f.done() for f in items))
        return [f.result() for f in items]

    # --- deterministic replacements -----------------------------------------------------------------
    def now(self) -> datetime:
        """The time of the event the workflow is reacting to (UTC): the same on every replay."""
        return datetime.fromtimestamp(self._instance.now, tz=timezone.utc)

    def random(self) -> float:
        return self._rng.random()

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def side_effect(self, fn: Callable[[], T]) -> T:
        """Call `fn` once and record its value; replays return the recorded value without calling it."""
        inst = self._instance
        seq = inst.next_seq()
        recorded = inst.recorded_marker(seq)
        if recorded is not _UNSET:
            value = recorded
        else:
            value = fn()
            inst.check_payload(value, "side_effect value")
        inst.issue(cmds.RecordMarker(seq, "side_effect", value), None)
        return value

    # --- versioning ------------------------------------------------------------------------------------
    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new code path of change `change_id`:

            if ctx.patched("charge-before-ship"):
                ctx.execute_activity(charge, order)      # the new code
            ctx.execute_activity(ship, order)

        A run executing this call for the first time records a patch marker in its history and gets
        True. Replaying, a run gets True when its history holds that marker and False when it does not
        (it was recorded by code from before the change), so runs started under the old code keep
        replaying the old branch without a `NonDeterminismError`. Every later call with the same id in
        the same run gives the same answer. Once no run from before the change is open, replace the call
        with `ctx.deprecate_patch(change_id)` and keep only the new branch."""
        return self._instance.patch(change_id, deprecated=False)

    def deprecate_patch(self, change_id: str) -> None:
        """Step two of retiring `patched(change_id)`, once no run recorded without its marker is open:
        the new branch runs unconditionally, runs that hold the marker still replay, and new runs record a
        deprecated marker, which replay skips once the call itself is removed (step three)."""
        self._instance.patch(change_id, deprecated=True)

    # --- search attributes --------------------------------------------------------------------------
    @property
    def search_attributes(self) -> dict[str, Any]:
        """The run's search attributes: those it was started with, as this code upserted them since."""
        return dict(self._search_attributes)

    def upsert_search_attributes(self, attributes: dict[str, Any] | None = None, /, **values: Any) -> None:
        """Set search attributes (a value of None removes one): `ctx.upsert_search_attributes(stage="paid",
        amount=42.5)`. Recorded as a command (`search_attributes_upserted`) and indexed in the same write,
        so listings find the run by the new values from then on; replay checks that the code upserts the
        same values at the same point (another value is a `NonDeterminismError`). Values are typed
        (beluga/core/search.py): a bad one raises `InvalidSearchAttribute` here."""
        given = check_attributes({**(attributes or {}), **values}, allow_unset=True)
        if not given:
            raise WorkflowError("upsert_search_attributes: give at least one attribute")
        inst = self._instance
        after = merged(self._search_attributes, given)
        inst.issue(cmds.UpsertSearchAttributes(inst.next_seq(), given), None)
        self._search_attributes = after

    # --- queries, children, continue-as-new, cancellation ------------------------------------------
    def set_query_handler(self, name: str, handler: Callable[..., Any]) -> None:
        if name in ("status", "result"):
            raise WorkflowError(f"query type {name!r} is built in; pick another name")
        self._query_handlers[name] = handler

    def set_update_handler(self, name: str, handler: Callable[..., Any],
                           validator: Callable[..., Any] | None = None) -> None:
        """Handle `executor.update(id, name, *args)`. `validator(*args)` runs first, read-only, as a query
        does: it raises to reject the update (nothing is recorded; the caller gets its error). An accepted
        update is recorded (`update_accepted`), then `handler(*args)` runs as workflow code, beside the
        workflow function: it may call activities, sleep and wait, and what it returns (or raises) is
        recorded (`update_completed`) and is the caller's answer. Replay runs it again at the same point."""
        if not callable(handler) or (validator is not None and not callable(validator)):
            raise WorkflowError(f"update {name!r}: its handler and validator must be callable")
        self._update_handlers[check_name(name, "update name")] = (handler, validator)

    def wait_condition(self, condition: Callable[[], bool]) -> None:
        """Park until `condition()` is true: state the workflow's own code changes (an update handler, a
        signal received elsewhere). Deterministic: it is looked at again after each input."""
        self._instance.block(condition)

    def execute_child_workflow(self, workflow: Any, input: Any = None, *, id: str | None = None,
                               parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE) -> Any:
        return self.start_child_workflow(workflow, input, id=id, parent_close_policy=parent_close_policy).result()

    def start_child_workflow(self, workflow: Any, input: Any = None, *, id: str | None = None,
                             parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE
                             ) -> Future[Any]:
        """Start a child run; its `Future` holds the child's result. `parent_close_policy`: what happens to
        the child should this run close while the child is still open (`ParentClosePolicy`)."""
        inst = self._instance
        name = workflow_name(workflow)
        try:
            policy = ParentClosePolicy(parent_close_policy).value
        except ValueError:
            raise WorkflowError(f"unknown parent_close_policy {parent_close_policy!r}; one of "
                                f"{', '.join(p.value for p in ParentClosePolicy)}") from None
        inst.check_payload(input, f"input of child workflow {name!r}")
        seq = inst.next_seq()
        child_id = check_name(id, "child workflow id") if id is not None else f"{self.workflow_id}/child-{seq}"
        return inst.issue(cmds.StartChildWorkflow(seq, name, child_id, input, policy), Future(self))

    def continue_as_new(self, input: Any = None) -> None:
        """End this run and start a fresh one (new run id, empty history) of the same workflow id."""
        self._instance.check_payload(input, "continue_as_new input")
        raise ContinueAsNewRequest(input)

    def is_cancelled(self) -> bool:
        return self._instance.cancel_requested


class ContinueAsNewRequest(BaseException):
    """Unwinds the workflow to end the run; a BaseException so that `except Exception` lets it pass."""

    def __init__(self, input: Any) -> None:
        super().__init__("continue as new")
        self.input = input


def _alive(ref: weakref.ref[Any]) -> Any:
    target = ref()
    if target is None:
        raise WorkflowError("this workflow context belongs to a run no longer in memory")
    return target


def _flatten(items: Sequence[Any]) -> list[Any]:
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        return list(items[0])
    return list(items)
