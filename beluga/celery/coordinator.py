"""The coordinator: drains a run's inbox, replays the workflow with the pure core, compare-and-appends
the new events to the run's Redis Stream (consuming the inbox messages in the same atomic step), and
only then dispatches what comes next.

Only the holder of the run's lease appends; a coordinator that loses a race re-reads and tries again.
A run waiting on activities stays live in a small per-process cache; when another worker process has
advanced it meanwhile, the cached instance catches up by applying just the new events, so a step
costs the same at event 6000 as at event 6. Runs parked on signals or timers are dropped from memory
at once and replayed when they wake."""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from beluga import codec
from beluga.celery.fleet import Begun, Fleet
from beluga.celery.outages import TRANSIENT, retry_transient
from beluga.core import commands as cmds
from beluga.core.definitions import Registry, effective_option, effective_retry
from beluga.core.errors import ConfigurationError, NonDeterminismError, SerializationError
from beluga.core.failure import child_outcome
from beluga.core.instance import WorkflowInstance
from beluga.core.pending import Pending, fold, pending_work
from beluga.core.records import Append, Event, EventType, WorkflowState, WorkflowStatus
from beluga.core.retry import RetryPolicy

log = logging.getLogger("beluga.coordinator")
E = EventType
_CLOSE = {cmds.CompleteWorkflow: WorkflowStatus.COMPLETED, cmds.FailWorkflow: WorkflowStatus.FAILED,
          cmds.CancelWorkflow: WorkflowStatus.CANCELED}
INBOX_BATCH = 100


class Stuck(Exception):
    """The run cannot be driven by this process (its code is missing or no longer matches)."""


@dataclass(slots=True)
class _Live:
    state: WorkflowState          # summary (no history)
    version: int
    instance: WorkflowInstance
    pending: Pending


@dataclass(slots=True)
class _Step:
    live: _Live
    events: list[Event] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    allowed: list[tuple[int, int]] = field(default_factory=list)  # activity attempts this step sends
    status: WorkflowStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def next_id(self) -> int:
        return self.live.version + len(self.events) + 1

    def emit(self, events: list[Event]) -> None:
        self.events.extend(events)
        for ev in events:
            fold(self.live.pending, ev)


class Coordinator:
    def __init__(self, fleet: Fleet, registry: Registry, *, dispatch: Callable[..., None],
                 wake: Callable[[str, str | None], None], start_child: Callable[..., None],
                 check_payload: Callable[[Any], Any], cache_size: int = 256) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.registry = registry
        self.dispatch = dispatch
        self.wake = wake
        self.start_child = start_child
        self.check_payload = check_payload
        self.cache: OrderedDict[str, _Live] = OrderedDict()
        self.cache_size = cache_size
        self._rand = random.Random()

    def run(self, workflow_id: str, report: tuple[int, int, dict[str, Any], int | None] | None = None) -> bool:
        """Process the run's inbox under its lease. False when another coordinator holds the lease: it
        looks at the inbox again as it lets go, so nothing waits unseen. `report` is an activity
        attempt's (seq, attempt, message, next attempt), handed over by the task that ran it."""
        worked = False
        if report is not None:
            done = self._report_fast(workflow_id, report)
            if done:
                return True
            if done is not None:
                report = None  # queued by the script: the coordinator below takes it from the inbox
        for _ in range(100):
            cached = self.cache.get(workflow_id)
            known = cached.version if cached else 0
            if report is not None:
                seq, attempt, message, next_attempt = report
                report = None
                begun = self.fleet.report_and_begin(workflow_id, seq, attempt, message, next_attempt,
                                                    INBOX_BATCH, known)
            else:
                begun = self.fleet.begin(workflow_id, INBOX_BATCH, known)
            if begun is None:
                return worked
            worked = True
            try:
                waiting = self._step(workflow_id, begun)
                while waiting is None:  # lost an append race while holding the lease: re-read
                    waiting = self._step(workflow_id, self.fleet.read(workflow_id, begun.token, INBOX_BATCH))
            except BaseException:
                self._drop(workflow_id)  # its cached instance may have taken inputs that were not recorded
                retry_transient(lambda token=begun.token: self.fleet.release(workflow_id, token), 2.0)  # Redis back?
                raise
            if not waiting:
                return True
        self.wake(workflow_id, None)
        return True

    def _report_fast(self, workflow_id: str, report: tuple[int, int, dict[str, Any], int | None]) -> bool | None:
        """The common case in one round trip: this process has the run cached, so it applies the report
        and appends the result at once, conditional on nobody having touched the run meanwhile. True
        when done; False when the script queued the report instead; None when not tried."""
        live = self.cache.get(workflow_id)
        if live is None or not live.state.status.is_open:
            return None
        seq, attempt, message, next_attempt = report
        before = live.state
        step = _Step(live)
        self._apply(step, message)
        if not step.events:  # stale for this cached state: let the coordinator sort it out
            return None
        append = Append(workflow_id, live.state.run_id, live.version, tuple(step.events), step.status, step.result,
                        step.error, time.time())
        call = self.store.append_call(append, attempts=step.allowed, dispatch_deadline=self.fleet.dispatch_deadline(),
                                      summary=before)
        try:
            queued = self.fleet.report_and_append(call, seq, attempt, message, next_attempt) < 0
        except BaseException:
            self._drop(workflow_id)  # the cached instance took the report, which may not be recorded
            raise
        if queued:
            self._drop(workflow_id)  # it was applied to the cached instance: rebuild from the store
            return False
        live.version += len(step.events)
        _after(step)
        if step.status is not None:
            _after_one(lambda: self.store.restatus(workflow_id, step.status))
        self._keep_or_drop(live)
        return True

    # --- one step -------------------------------------------------------------------------------------
    def _step(self, workflow_id: str, begun: Begun) -> int | None:
        """Record the messages and release the lease in one append. Returns how many messages wait in
        the inbox after it, or None when the append was refused (the lease is still held)."""
        run_id, version, raw = begun.run_id, begun.version, begun.messages
        if run_id is None:
            if raw:
                log.warning("messages for unknown workflow %s: dropping its inbox", workflow_id)
                self.fleet.redis.delete(self.store.keys(workflow_id)[2])
            return self.fleet.release(workflow_id, begun.token)
        live, owed = self._live(workflow_id, run_id, version, begun.newer)
        step = _Step(live)
        if owed:  # the run's first activation after start: its commands are recorded now
            self._commands(step, owed, time.time())
        for item in raw:
            msg = _decode(item, workflow_id)
            if msg is not None:
                self._apply(step, msg)
        if not step.events and not begun.inbox_used and step.status is None:
            self._keep_or_drop(live)
            return self.fleet.release(workflow_id, begun.token)
        waiting = self.store.append_one(
            Append(workflow_id, run_id, version, tuple(step.events), step.status, step.result, step.error,
                   time.time()), inbox_used=begun.inbox_used, attempts=step.allowed, lease_token=begun.token,
            dispatch_deadline=self.fleet.dispatch_deadline())
        if waiting is None:
            self._drop(workflow_id)
            return None
        live.version += len(step.events)
        _after(step)
        self._keep_or_drop(live)
        return waiting

    def _keep_or_drop(self, live: _Live) -> None:
        """Keep open runs live in a bounded LRU (a signal to a cached parked run costs no replay); the
        number of parked runs never grows worker memory past `cache_size`. Closed runs cost none."""
        wid = live.state.workflow_id
        if live.state.status.is_open:
            self.cache[wid] = live
            self.cache.move_to_end(wid)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)[1].instance.close()
        else:
            self._drop(wid)
            live.instance.close()

    def _drop(self, workflow_id: str) -> None:
        live = self.cache.pop(workflow_id, None)
        if live is not None:
            live.instance.close()

    def _live(self, workflow_id: str, run_id: str, version: int, newer: list[bytes]
              ) -> tuple[_Live, list[cmds.Command]]:
        live = self.cache.get(workflow_id)
        if live is not None and live.state.run_id == run_id and live.version <= version:
            if live.version == version:
                return live, []
            events = [codec.decode_event(e) for e in newer] if len(newer) == version - live.version \
                else self.store.history(workflow_id, after=live.version)
            try:  # another process advanced the run: apply just the new events
                if not live.instance.activate(events):
                    for ev in events:
                        fold(live.pending, ev)
                    live.version = version
                    return live, []
            except NonDeterminismError:
                pass
        self._drop(workflow_id)
        return self._load(workflow_id)

    def _load(self, workflow_id: str) -> tuple[_Live, list[cmds.Command]]:
        state = self.store.load(workflow_id)
        if state is None:
            raise Stuck(f"workflow {workflow_id} vanished while being coordinated")
        try:
            defn = self.registry.workflow(state.workflow_type)
        except ConfigurationError as exc:
            raise Stuck(str(exc)) from exc
        instance = WorkflowInstance(defn, workflow_id, state.run_id, check_payload=self.check_payload)
        live = _Live(replace(state, history=()), len(state.history), instance, pending_work(state.history))
        if not state.status.is_open:
            return live, []
        try:
            return live, instance.activate(state.history)
        except NonDeterminismError as exc:
            raise Stuck(str(exc)) from exc

    # --- inputs ---------------------------------------------------------------------------------------
    def _apply(self, step: _Step, msg: dict[str, Any]) -> None:
        live = step.live
        if not live.state.status.is_open or live.instance.finished:
            return
        if msg.get("run") not in (None, live.state.run_id):
            return  # for an earlier run of this id
        kind = msg["k"]
        if kind == "signal":
            self._record(step, E.SIGNAL_RECEIVED, {"name": msg["name"], "payload": msg.get("payload"),
                                                   "sender_id": msg.get("sender_id")})
        elif kind == "cancel":
            if not live.instance.cancel_requested:
                self._record(step, E.CANCEL_REQUESTED, {})
        elif kind == "timer":
            if live.instance.is_pending(msg["seq"]):
                self._record(step, E.TIMER_FIRED, {"seq": msg["seq"]})
        elif kind == "timeout":
            step.emit([Event(step.next_id, E.WORKFLOW_TIMED_OUT, time.time(), {})])
            self._close(step, WorkflowStatus.TIMED_OUT, None, {
                "type": "TimeoutError", "message": f"workflow {live.state.workflow_id} ran past its timeout",
                "traceback": "", "non_retryable": True})
        elif kind == "child_done":
            if live.instance.is_pending(msg["seq"]):
                if msg.get("ok"):
                    self._record(step, E.CHILD_WORKFLOW_COMPLETED, {"seq": msg["seq"],
                                                                    "result": msg.get("payload")})
                else:
                    self._record(step, E.CHILD_WORKFLOW_FAILED, {"seq": msg["seq"],
                                                                 "error": msg.get("payload")})
        elif kind == "activity":
            self._activity(step, msg)
        elif kind == "start":
            pass  # only wakes the run: its first activation happened when it was loaded
        elif kind == "dispatch":
            act = live.pending.activities.get(msg["seq"])
            if act is not None and not act.started and act.attempt == msg["attempt"]:
                self._begin(step, msg["seq"], act.attempt)
        else:
            log.error("unknown inbox message kind %r for %s; dropped", kind, live.state.workflow_id)

    def _activity(self, step: _Step, msg: dict[str, Any]) -> None:
        live = step.live
        seq, attempt = msg["seq"], msg["attempt"]
        act = live.pending.activities.get(seq)
        if act is None or not act.started or act.attempt != attempt:
            return  # a duplicate or a stale attempt
        if msg.get("ok"):
            self._record(step, E.ACTIVITY_COMPLETED, {"seq": seq, "attempt": attempt,
                                                      "result": msg.get("payload")})
            return
        failure = msg.get("payload") or {}
        if "retry_in" in msg:      # the task decided; Celery's retry runs the next attempt
            delay, by_celery = msg["retry_in"], bool(msg.get("celery_retry"))
        else:                      # the worker was lost: decide here
            delay, by_celery = self._policy(act.name, act.options).next_delay(
                attempt, failure, self._rand.random()), False
        self._record(step, E.ACTIVITY_FAILED, {"seq": seq, "attempt": attempt, "error": failure,
                                               "retry_in": delay})
        if delay is None:
            return
        if by_celery:
            self._begin(step, seq, attempt + 1, send=False)
        else:
            wid, due = live.state.workflow_id, time.time() + delay
            dispatch = {"k": "dispatch", "run": live.state.run_id, "seq": seq, "attempt": attempt + 1}
            step.after.append(lambda: self.fleet.arm(wid, due, dispatch))

    # --- recording ------------------------------------------------------------------------------------
    def _record(self, step: _Step, type: str, attrs: dict[str, Any]) -> None:
        """Append one input event and the commands the workflow issues in reaction to it."""
        now = time.time()
        ev = Event(step.next_id, type, now, attrs)
        new = step.live.instance.activate((ev,))
        step.emit([ev])
        if new:
            self._commands(step, new, now)

    def _commands(self, step: _Step, new: list[cmds.Command], now: float) -> None:
        live = step.live
        base = step.next_id
        step.emit([cmds.to_event(c, base + i, now) for i, c in enumerate(new)])
        wid, rid = live.state.workflow_id, live.state.run_id
        for c in new:
            if isinstance(c, cmds.ScheduleActivity):
                self._begin(step, c.seq, 1)
            elif isinstance(c, cmds.StartTimer):
                timer = {"k": "timer", "run": rid, "seq": c.seq}
                step.after.append(lambda due=now + c.duration, timer=timer: self.fleet.arm(wid, due, timer))
            elif isinstance(c, cmds.StartChildWorkflow):
                link = {"workflow_id": wid, "run_id": rid, "seq": c.seq}
                step.after.append(lambda c=c, link=link: self.start_child(c, link, live.state.queue))
            elif isinstance(c, cmds.ContinueAsNew):
                previous = live.state
                live.state = replace(live.state, status=WorkflowStatus.COMPLETED)
                step.after.append(lambda c=c, previous=previous: self.start_child(
                    None, None, previous.queue, continue_from=previous, input=c.input))
            elif type(c) in _CLOSE:
                self._close(step, _CLOSE[type(c)], getattr(c, "result", None), getattr(c, "error", None))

    def _policy(self, name: str, options: dict[str, Any]) -> RetryPolicy:
        return effective_retry(options, self.registry.activities.get(name))

    def _options(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """What the activity message carries: the call's own options plus where and how long to run
        (the sender needs those); the worker that runs it resolves the retry policy from its own code."""
        defn = self.registry.activities.get(name)
        merged = dict(options)
        for key in ("timeout", "heartbeat_timeout", "queue"):
            value = effective_option(options, defn, key)
            if value is not None:
                merged[key] = value
        return merged

    def _begin(self, step: _Step, seq: int, attempt: int, send: bool = True) -> None:
        live = step.live
        self._record(step, E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt})
        if send:
            step.allowed.append((seq, attempt))
            act = live.pending.activities[seq]
            wid, rid = live.state.workflow_id, live.state.run_id
            options = self._options(act.name, act.options)
            step.after.append(lambda: self.dispatch(wid, rid, seq, attempt, act.name, act.input, options))

    def _close(self, step: _Step, status: WorkflowStatus, result: Any, error: dict[str, Any] | None) -> None:
        live = step.live
        live.state = replace(live.state, status=status, result=result, error=error)
        step.status, step.result, step.error = status, result, error
        step.after.append(lambda: self.fleet.announce_closed(live.state.workflow_id, status.value))
        parent = live.state.parent
        if not parent:
            return
        ok, payload = child_outcome(live.state)
        msg = {"k": "child_done", "run": parent["run_id"], "seq": parent["seq"], "ok": ok, "payload": payload}

        def notify() -> None:
            self.fleet.push(parent["workflow_id"], msg)
            self.wake(parent["workflow_id"], None)

        step.after.append(notify)


def _after(step: _Step) -> None:
    """What a recorded step leads to (send activities, arm timers, start children, tell the parent):
    each is done even if an earlier one failed, since the step is recorded and will not run again."""
    for action in step.after:
        _after_one(action)


def _after_one(action: Callable[[], None], budget: float = 10.0) -> None:
    try:
        retry_transient(action, budget)
    except TRANSIENT as exc:
        log.error("a recorded step's follow-up failed for %gs, giving up on it: %s", budget, exc)
    except Exception:
        log.exception("a recorded step's follow-up failed")


def _decode(item: bytes, workflow_id: str) -> dict[str, Any] | None:
    try:
        msg = codec.decode(item)
    except SerializationError as exc:
        log.error("dropping an undecodable message in the inbox of %s: %s", workflow_id, exc)
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("k"), str):
        log.error("dropping a foreign message in the inbox of %s: %.200r", workflow_id, msg)
        return None
    return msg
