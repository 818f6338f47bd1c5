"""The worker side of the `temporal` executor: one dynamic Temporal workflow that runs any Beluga workflow
through the run driver (`beluga.core.driver`), and one dynamic activity that runs any Beluga activity.

The Temporal workflow keeps a Beluga history in memory, rebuilt identically on every Temporal replay: it
feeds each outcome Temporal delivers (an activity's final result, a timer, a signal, a cancellation, a
child's end) to the driver as its typed input and turns the driver's effects into Temporal calls, so what an
input records, how a run closes and where a signal that races the close goes are decided where the other
executors decide them. Which code path a run takes is Temporal's to check, against its own history: a
mismatch (an activity of another type, a timer where an activity was) fails the workflow task, the run stays
open and untouched, and `describe()` reports the `NonDeterminismError`. What Temporal owns instead of the
driver is listed on `BelugaWorkflow`.

Workflow code runs in a greenlet, switched to from Temporal's workflow coroutine. Temporal's sandbox
re-imports modules per run, which a greenlet-based engine and user modules importing Beluga do not
survive, so the workflow is declared `sandboxed=False`: Beluga's own rules (ctx.now, ctx.random, ...)
keep it deterministic, as on the other executors. A greenlet can only be resumed on the thread that
created it, so the worker runs workflow tasks on one thread (`workflow_task_executor` with one worker);
activities run on a thread pool.

Every value crosses Temporal as Beluga's msgpack bytes (`beluga.codec`, Temporal's `binary/plain`
payloads), never pickle.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import greenlet
from temporalio import exceptions, workflow
from temporalio.common import Priority, RawValue
from temporalio.common import RetryPolicy as TemporalRetry

from beluga import codec
from beluga.core import commands as cmds
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.context import WorkflowContext
from beluga.core.definitions import Registry, effective_option, effective_retry
from beluga.core.errors import WorkflowError
from beluga.core.failure import (
    attempt_timed_out,
    cancelled,
    child_not_started,
    no_heartbeat,
    raise_as_own,
    to_failure,
)
from beluga.core.instance import WorkflowInstance
from beluga.core.records import Event, EventType, ParentClosePolicy, Signal, WorkflowState, WorkflowStatus
from beluga.hooks import Hooks
from beluga.temporal.activities import (
    NO_TIMEOUT,
    SIDE_EFFECT,
    async_activities,
    configure,
    drop_side_effect,
    hold_side_effect,
    raw_value,
    run_activity,
    run_side_effect,
    worker_config,
)
from beluga.temporal.failures import application_error, failure_of, retry_policy

E = EventType
HISTORY_QUERY = "__beluga_history"
PARENT_SEQ = "beluga_parent_seq"   # memo of a child run: the seq of the parent's call that started it
STARTED_BY = "beluga_identity"     # memo of a run: who started it (`WorkflowOptions.identity`)
# memo of a run: its search attributes (upserts rewrite it) and its Beluga memo, codec-encoded. Kept in
# Temporal's memo, not its search attributes, which need registering on the server (docs/temporal.md).
SEARCH_ATTRIBUTES = "beluga_search_attributes"
MEMO = "beluga_memo"
_PARENT_CLOSE = {ParentClosePolicy.TERMINATE.value: workflow.ParentClosePolicy.TERMINATE,
                 ParentClosePolicy.REQUEST_CANCEL.value: workflow.ParentClosePolicy.REQUEST_CANCEL,
                 ParentClosePolicy.ABANDON.value: workflow.ParentClosePolicy.ABANDON}


def run_memo(options: Any) -> dict[str, Any] | None:
    """A run's memo (`options`: its WorkflowOptions): its trace headers, and who started it (read by the
    worker into `workflow_started`)."""
    memo: dict[str, Any] = dict(options.headers or {})
    if options.identity is not None:
        memo[STARTED_BY] = options.identity
    if options.search_attributes:
        memo[SEARCH_ATTRIBUTES] = codec.encode(options.search_attributes)
    if options.memo is not None:
        memo[MEMO] = codec.encode(options.memo)
    return memo or None


def _memo(attributes: bytes | None, memo: bytes | None) -> tuple[dict[str, Any], Any]:
    """A run's search attributes and Beluga memo, from its Temporal memo (see `run_memo`)."""
    return (codec.decode(attributes) if attributes else {}), (codec.decode(memo) if memo else None)


class _Context(WorkflowContext):
    def side_effect(self, fn: Callable[[], Any]) -> Any:
        """Run once, as a Temporal local activity: replays read its recorded marker instead."""
        inst = self._instance
        seq = inst.next_seq()
        value = inst.side_effect_value(seq, fn)  # type: ignore[attr-defined]
        inst.issue(cmds.RecordMarker(seq, "side_effect", value), None)
        return value


class _Instance(WorkflowInstance):
    """The core's instance with side effects and patches answered by Temporal's own mechanisms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.side_requests: dict[int, Callable[[], Any]] = {}
        self._side_values: dict[int, Any] = {}

    def _start(self, ev: Event) -> None:
        super()._start(ev)
        ctx = self._ctx
        assert ctx is not None
        new = _Context(self, ctx.workflow_id, ctx.run_id, ctx.workflow_type, int(ev.attrs.get("seed", 0)))
        new._search_attributes, new.memo = ctx._search_attributes, ctx.memo
        self._ctx = new

    def side_effect_value(self, seq: int, fn: Callable[[], Any]) -> Any:
        if self.read_only:
            self.block(lambda: False)
        self.side_requests[seq] = fn
        self.block(lambda: seq in self._side_values)
        value = self._side_values.pop(seq)
        if isinstance(value, dict) and "error" in value:
            from beluga.core.failure import from_failure

            raise from_failure(value["error"])
        return value["value"]

    def resume(self, seq: int, value: dict[str, Any]) -> list[cmds.Command]:
        """Hand a side effect's value to the code parked on it; returns the commands that follow."""
        self._side_values[seq] = value
        self._run()
        new = list(self._issued)
        self._issued.clear()
        self.version += len(new)
        return new

    def patch(self, change_id: str, deprecated: bool) -> bool:
        g = self._greenlet
        if g is None or greenlet.getcurrent() is not g:
            raise WorkflowError("ctx.patched() can only be called by the workflow itself (not from a query handler)")
        use = self._patch_memo.get(change_id)
        if use is None:
            if deprecated:
                workflow.deprecate_patch(change_id)
                use = True
            else:
                use = workflow.patched(change_id)
            self._patch_memo[change_id] = use
            if use:
                self.issue(cmds.RecordMarker(0, cmds.PATCH, {"id": change_id, "deprecated": deprecated}), None)
        return use


def build(task_queue: str, registry: Registry, hooks: Hooks, check: Callable[[Any], Any]
          ) -> tuple[type, list[Callable[..., Any]]]:
    """The workflow class and activities a worker on `task_queue` runs, bound to `registry` and `hooks`."""
    configure(task_queue, registry, hooks, check)
    return BelugaWorkflow, [run_activity, run_side_effect, *async_activities(registry)]


def _emit(name: str, workflow_id: str, payload: Any) -> None:
    if not workflow.unsafe.is_replaying():
        worker_config(workflow.info().task_queue).hooks.emit(name, workflow_id, payload)


@dataclass(frozen=True)
class _SideEffectDone:
    """A side effect's local activity ended: `value` resumes the code parked on it (`_Instance.resume`)."""

    seq: int
    value: dict[str, Any]


_Item = st.Input | _SideEffectDone


@workflow.defn(dynamic=True, sandboxed=False)
class BelugaWorkflow:
    """One Beluga run, driven by `RunDriver`: what Temporal delivers is queued as the driver's typed
    inputs and applied one step each, in the order it arrived; the effects become Temporal calls.

    Kept here, outside the driver, because Temporal owns them:
    - Retries: Temporal retries an activity by its mapped `RetryPolicy` and the workflow sees only the
      final outcome, fed as `final`, so the driver arms no retry timer of its own.
    - A run that no longer loads (its code is missing, or diverges) is not the driver's stuck run, which
      records its inputs deferred: Temporal's history already holds them, and a replay that issued their
      owed commands later than Temporal recorded them would fail Temporal's determinism check. The
      workflow task fails instead; Temporal keeps the run open and retries the task until matching code
      is deployed, and the executor reports the task's failure as the run's `error`.
    - Side effects resume the code when their local activity ends, which is no Beluga input: their
      commands are recorded through `RunDriver.commands` in a step of their own (an input that arrives
      meanwhile stands before the side effect's marker, where the core, which runs side effects inline,
      never puts one).
    - A signal that arrives as the run closes is kept before the close when the close followed an input
      (the driver's closing step stays open for it, even after the run function returned: Temporal may
      deliver such a signal in a later activation). Code that closes the run without ever waiting, or
      straight out of a side effect, closed it on no Beluga input, so such a signal is in Temporal's
      history only.
    """

    def __init__(self) -> None:
        self._inbox: deque[_Item] = deque()
        self._history: list[Event] = []            # the events of the sealed steps
        self._driver: drv.RunDriver | None = None
        self._closing: st.Step | None = None       # the step that closed the run, open to late signals
        self._closed: st.RunClosed | st.ContinueAsNew | None = None
        self._done = False                          # the run function has returned
        self._updates: dict[str, st.UpdateCompleted] = {}  # ended updates, for their Temporal handlers

    # --- Temporal's entry points --------------------------------------------------------------
    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> bytes:
        info = workflow.info()
        driver, step = self._load(info, raw_value(args[0]) if args else None)
        try:
            self._settle(step, workflow.now().timestamp())
            while self._closed is None:
                try:
                    await workflow.wait_condition(lambda: bool(self._inbox))
                except asyncio.CancelledError:
                    self._inbox.append(st.CancelRequested())
                self._drain()
            return self._finish(info.workflow_id)
        finally:
            self._done = True
            driver.close()

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        body = raw_value(args[0]) if args else {}
        self._inbox.append(st.SignalReceived(name, body.get("payload"), body.get("sender_id"), body.get("identity")))
        if self._done:  # a signal racing the close, delivered after the run function returned
            self._drain()

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> bytes:
        """Temporal accepted the update (its validator passed): it becomes the driver's input, recorded and
        run as workflow code; the handler's end is this update's answer, encoded as a query's is."""
        body = raw_value(args[0]) if args else {}
        info = workflow.current_update_info()
        update_id = info.id if info is not None else str(workflow.uuid4())
        self._inbox.append(st.UpdateRequested(update_id, name, tuple(body.get("args") or ()), body.get("identity")))
        await workflow.wait_condition(lambda: update_id in self._updates or self._closed is not None)
        done = self._updates.get(update_id)
        if done is None:
            return codec.encode({"error": to_failure(WorkflowError(
                f"workflow {workflow.info().workflow_id} closed before update {update_id!r} completed"))})
        return codec.encode({"value": done.payload} if done.ok else {"error": done.payload})

    @on_update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        """The update's validator on the live run, read-only: raising rejects it, and Temporal records
        nothing (the caller gets the error, as its Beluga failure record)."""
        instance = self._driver.instance if self._driver is not None else None
        try:
            if instance is None or self._closed is not None:
                raise WorkflowError("the run is not running its code")
            body = raw_value(args[0]) if args else {}
            instance.validate_update(name, *(body.get("args") or ()))
        except Exception as exc:
            raise application_error(to_failure(exc)) from None

    @workflow.query(dynamic=True)
    def on_query(self, name: str, args: Sequence[RawValue]) -> bytes:
        try:
            if name == HISTORY_QUERY:
                return codec.encode({"value": [codec.encode_event(ev) for ev in self._events()]})
            instance = self._driver.instance if self._driver is not None else None
            if instance is None:
                raise WorkflowError("the run has not started its code yet")
            values = raw_value(args[0]) if args else []
            return codec.encode({"value": instance.query(name, *values)})
        except Exception as exc:
            return codec.encode({"error": to_failure(exc)})

    # --- the run driver -------------------------------------------------------------------------
    def _load(self, info: workflow.Info, value: Any) -> tuple[drv.RunDriver, st.Step]:
        """Start the code on its start event, stamped with the time Temporal started the run (its
        WorkflowExecutionStarted event): the same in every replay, where the time of "the first task"
        is that of the first task the replay runs."""
        cfg = worker_config(info.task_queue)
        started: dict[str, Any] = {"workflow_type": info.workflow_type, "input": value,
                                   "seed": workflow.random().getrandbits(63)}
        if info.continued_run_id:
            started["continued_from"] = info.continued_run_id
        if info.parent is not None:
            started["parent"] = {"workflow_id": info.parent.workflow_id, "run_id": info.parent.run_id}
        identity = workflow.memo_value(STARTED_BY, None)
        if identity is not None:
            started["identity"] = str(identity)
        attributes, memo = _memo(workflow.memo_value(SEARCH_ATTRIBUTES, None, type_hint=bytes),
                                 workflow.memo_value(MEMO, None, type_hint=bytes))
        if attributes:
            started["search_attributes"] = attributes
        if memo is not None:
            started["memo"] = memo
        priority = getattr(getattr(info, "priority", None), "priority_key", None)
        if priority:  # the run's own, as Temporal recorded it (beluga/core/priority.py)
            started["priority"] = priority
        at = info.workflow_start_time.timestamp()
        state = WorkflowState(info.workflow_id, info.run_id, info.workflow_type, input=value, created_at=at,
                              updated_at=at, history=(Event(1, E.WORKFLOW_STARTED, at, started),),
                              queue=info.task_queue, search_attributes=attributes, memo=memo)
        driver, step = drv.load(state, cfg.registry.workflow, cfg.registry.retry_policy, check_payload=cfg.check,
                                now=workflow.now().timestamp(), instance_type=_Instance)
        if driver.stuck is not None:  # fail the workflow task: Temporal keeps the run open (see the class)
            raise_as_own(driver.stuck)
        self._driver, self._history = driver, list(state.history)
        return driver, step

    def _drain(self) -> None:
        while self._inbox:
            self._take(self._inbox.popleft())

    def _take(self, item: _Item) -> None:
        driver = self._driver
        assert driver is not None
        step = self._closing or driver.begin()
        now = workflow.now().timestamp()
        if isinstance(item, _SideEffectDone):
            new = self._instance().resume(item.seq, item.value) if driver.is_open else []
            if new:
                driver.commands(step, new, now)
        else:
            driver.apply(step, item, now, workflow.random().random())
        self._settle(step, now)

    def _settle(self, step: st.Step, now: float) -> None:
        """Seal a step into the history (a closing step stays open to late signals), carry out its
        effects and start the side effects its code asked for."""
        assert self._driver is not None
        if step.search_attributes is not None:  # where clients read them (see SEARCH_ATTRIBUTES)
            workflow.upsert_memo({SEARCH_ATTRIBUTES: codec.encode(step.search_attributes)})
            step.search_attributes = None
        if step.closing is not None:
            self._closing = step
        else:
            self._history.extend(self._driver.seal(step).events)
        while step.effects:  # consumed: a late signal's hook goes first in a closing step's effects
            self._effect(step.effects.pop(0), now)
        instance = self._instance()
        for seq in list(instance.side_requests):
            asyncio.create_task(self._side_effect(seq, instance.side_requests.pop(seq)))

    def _instance(self) -> _Instance:
        instance = self._driver.instance if self._driver is not None else None
        assert isinstance(instance, _Instance)
        return instance

    def _events(self) -> list[Event]:
        """The Beluga history: the sealed steps, then the closing step (numbered here, never sealed)."""
        tail = self._closing.events if self._closing is not None else []
        base = len(self._history)
        return [*self._history, *(replace(ev, id=base + i + 1) for i, ev in enumerate(tail))]

    def _finish(self, workflow_id: str) -> bytes:
        closed = self._closed
        if isinstance(closed, st.ContinueAsNew):  # the next run gets this one's memo, attributes as upserted
            memo = dict(workflow.memo())
            if self._driver is not None and self._driver.state.search_attributes:
                memo[SEARCH_ATTRIBUTES] = codec.encode(self._driver.state.search_attributes)
            workflow.continue_as_new(codec.encode(closed.input), memo=memo)
        assert isinstance(closed, st.RunClosed)
        if closed.status is WorkflowStatus.COMPLETED:
            _emit("on_workflow_complete", workflow_id, closed.result)
            return codec.encode(closed.result)
        if closed.error is not None:
            _emit("on_workflow_fail", workflow_id, closed.error)
            raise application_error({**closed.error, "non_retryable": True})
        _emit("on_workflow_fail", workflow_id, cancelled(f"workflow {workflow_id} was cancelled"))
        raise asyncio.CancelledError()

    # --- what effects become ----------------------------------------------------------------------
    def _effect(self, effect: st.Effect, now: float) -> None:
        if isinstance(effect, st.DispatchAttempt):
            asyncio.create_task(self._activity(effect))
        elif isinstance(effect, st.ArmTimer):
            asyncio.create_task(self._timer(effect.seq, effect.due - now))
        elif isinstance(effect, st.StartChild):
            asyncio.create_task(self._child(effect))
        elif isinstance(effect, (st.RunClosed, st.ContinueAsNew)):
            self._closed = effect
        elif isinstance(effect, st.CloseChildren):
            pass  # Temporal's server applies each child's ParentClosePolicy (given when it started, `_child`)
        elif isinstance(effect, st.Observed):
            # on_activity_complete fires in the activity's thread (`run_activity`), with the other
            # activity hooks
            if effect.hook == "on_signal":
                sig = effect.payload
                _emit("on_signal", workflow.info().workflow_id, Signal(sig.name, sig.payload, now, sig.sender_id))
        elif isinstance(effect, st.UpdateCompleted):
            self._updates[effect.update_id] = effect  # its Temporal handler (`on_update`) answers
        elif isinstance(effect, st.ActivityClosed):
            pass  # Temporal's own SDK metrics measure an activity's schedule-to-close
        else:  # ArmRetry: outcomes are final (Temporal retried the attempts), so the driver arms none
            raise TypeError(f"not an effect the temporal workflow carries out: {effect!r}")

    async def _activity(self, d: st.DispatchAttempt) -> None:
        defn = worker_config(workflow.info().task_queue).registry.activities.get(d.name)
        policy = effective_retry(d.options, defn)
        timeout = effective_option(d.options, defn, "timeout")
        heartbeat = effective_option(d.options, defn, "heartbeat_timeout")
        to_start = effective_option(d.options, defn, "schedule_to_start_timeout")  # Temporal's own, not retried
        try:
            result = await workflow.execute_activity(
                d.name, codec.encode(d.input), activity_id=str(d.seq), result_type=bytes,
                start_to_close_timeout=timedelta(seconds=timeout) if timeout else NO_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
                schedule_to_start_timeout=timedelta(seconds=to_start) if to_start else None,
                retry_policy=retry_policy(policy),
                **({"priority": Priority(priority_key=d.options["priority"])} if d.options.get("priority") else {}))
        except exceptions.ActivityError as exc:
            fail = failure_of(exc)
            if fail.get("type") == "TimeoutError" and not str(fail.get("message", "")).startswith("activity "):
                # timed out by the server (the worker gives up an attempt itself, see `_bounded`)
                named = (no_heartbeat(d.name, None, heartbeat) if "heartbeat" in fail["message"] and heartbeat
                         else attempt_timed_out(d.name, None, timeout) if timeout else None)
                text = named["message"] if named else f"activity {d.name!r}: {fail['message']}"
                fail["message"] = f"{text} ({fail['message']} by Temporal)"
            attempts = fail.pop("attempt", None) or (policy.max_attempts if exc.retry_state
                                                     == exceptions.RetryState.MAXIMUM_ATTEMPTS_REACHED else 1)
            self._inbox.append(st.ActivityOutcome(d.seq, attempts, False, fail, final=True))
            return
        attempt, value = codec.decode(result)
        self._inbox.append(st.ActivityOutcome(d.seq, attempt, True, value, final=True))

    async def _timer(self, seq: int, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))
        self._inbox.append(st.TimerFired(seq))

    async def _child(self, c: st.StartChild) -> None:
        try:
            result = await workflow.execute_child_workflow(c.workflow_type, codec.encode(c.input),
                                                           id=c.workflow_id, result_type=bytes,
                                                           memo={PARENT_SEQ: c.seq},
                                                           parent_close_policy=_PARENT_CLOSE[c.parent_close_policy])
        except exceptions.ChildWorkflowError as exc:
            self._inbox.append(st.ChildClosed(c.seq, False, failure_of(exc)))
            return
        except Exception as exc:  # could not start it (its id is taken by a running workflow)
            kind = "WorkflowAlreadyStarted" if "already" in str(exc).lower() else type(exc).__name__
            self._inbox.append(st.ChildClosed(c.seq, False, child_not_started(c.workflow_id, kind, str(exc))))
            return
        self._inbox.append(st.ChildClosed(c.seq, True, codec.decode(result)))

    async def _side_effect(self, seq: int, fn: Callable[[], Any]) -> None:
        key = hold_side_effect(fn)
        try:
            raw = await workflow.execute_local_activity(
                SIDE_EFFECT, key, result_type=bytes, start_to_close_timeout=timedelta(minutes=10),
                retry_policy=TemporalRetry(maximum_attempts=1))
            value: dict[str, Any] = {"value": codec.decode(raw)}
        except exceptions.ActivityError as exc:
            value = {"error": failure_of(exc)}
        finally:
            drop_side_effect(key)
        self._inbox.append(_SideEffectDone(seq, value))
