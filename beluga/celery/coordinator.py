"""The coordinator: drains a run's inbox, replays the workflow with the pure core, compare-and-appends
the new events to the run's Redis Stream (consuming the inbox messages in the same atomic step), and
only then dispatches what comes next.

Only the holder of the run's lease appends; a coordinator that loses a race re-reads and tries again.
Live runs waiting on activities stay in a small per-process cache so a step costs O(1); runs parked on
signals or timers are dropped from memory at once and replayed when they wake."""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from beluga import codec
from beluga.core import commands as cmds
from beluga.core.definitions import Registry
from beluga.core.errors import ConfigurationError, NonDeterminismError, SerializationError
from beluga.core.instance import WorkflowInstance
from beluga.core.pending import pending_work
from beluga.core.records import Append, Event, EventType, WorkflowState, WorkflowStatus
from beluga.core.retry import RetryPolicy, default_retry_policy
from beluga.celery.fleet import Fleet

log = logging.getLogger("beluga.coordinator")
E = EventType
_CLOSE = {cmds.CompleteWorkflow: WorkflowStatus.COMPLETED, cmds.FailWorkflow: WorkflowStatus.FAILED,
          cmds.CancelWorkflow: WorkflowStatus.CANCELED}


class Stuck(Exception):
    """The run cannot be driven by this process (its code is missing or no longer matches)."""


@dataclass(slots=True)
class _Live:
    state: WorkflowState          # summary (no history)
    version: int
    instance: WorkflowInstance
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> name, input, options, attempt


@dataclass(slots=True)
class _Step:
    events: list[Event] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    status: WorkflowStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None


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

    def run(self, workflow_id: str) -> bool:
        """Process the run's inbox under its lease. False when another coordinator holds the lease."""
        token = self.fleet.acquire(workflow_id)
        if token is None:
            return False
        try:
            for _ in range(50):
                if not self._step(workflow_id):
                    break
        finally:
            self.fleet.release(workflow_id, token)
        if self.fleet.inbox_size(workflow_id):  # a message came in as the lease was released
            self.wake(workflow_id, None)
        return True

    # --- one step -------------------------------------------------------------------------------------
    def _step(self, workflow_id: str) -> bool:
        """One append; True when more inbox messages may be waiting."""
        run_id, version = self.store.version(workflow_id)
        if run_id is None:
            log.warning("wake for unknown workflow %s: dropping its inbox", workflow_id)
            self.fleet.redis.delete(self.store.keys(workflow_id)[2])
            return False
        live = self.cache.get(workflow_id)
        step = _Step()
        if live is None or live.state.run_id != run_id or live.version != version:
            live = self._load(workflow_id, step)
        raw = self.fleet.inbox(workflow_id)
        for item in raw:
            try:
                msg = codec.decode(item)
                if not isinstance(msg, dict) or "k" not in msg:
                    raise SerializationError("not a Beluga inbox message")
            except SerializationError as exc:
                log.error("dropping a malformed message in the inbox of %s: %s", workflow_id, exc)
                continue
            self._apply(live, step, msg)
        if not step.events and not raw and step.status is None:
            return False
        refused = self.store.append([Append(workflow_id, run_id, version, tuple(step.events), step.status,
                                            step.result, step.error, time.time())],
                                    inbox_used={workflow_id: len(raw)})
        if refused:
            self.cache.pop(workflow_id, None)
            return True
        live.version += len(step.events)
        for action in step.after:
            action()
        if live.state.status.is_open and any(t.get("running") for t in live.tasks.values()):
            self.cache[workflow_id] = live
            self.cache.move_to_end(workflow_id)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)[1].instance.close()
        else:  # parked or closed: no worker memory
            self.cache.pop(workflow_id, None)
            live.instance.close()
        return len(raw) >= 100

    def _load(self, workflow_id: str, step: _Step) -> _Live:
        state = self.store.load(workflow_id)
        assert state is not None
        summary = WorkflowState(**{f: getattr(state, f) for f in state.__dataclass_fields__ if f != "history"})
        try:
            defn = self.registry.workflow(state.workflow_type)
        except ConfigurationError as exc:
            raise Stuck(str(exc)) from exc
        instance = WorkflowInstance(defn, workflow_id, state.run_id, check_payload=self.check_payload)
        live = _Live(summary, len(state.history), instance)
        if not state.status.is_open:
            return live
        try:
            new = instance.activate(state.history)
        except NonDeterminismError as exc:
            raise Stuck(str(exc)) from exc
        work = pending_work(state.history)
        for seq, act in work.activities.items():
            live.tasks[seq] = {"name": act.name, "input": act.input, "options": act.options,
                               "attempt": act.attempt, "running": act.started}
        if new:
            self._commands(live, step, new, state.history[-1].timestamp)
        return live

    # --- inputs ---------------------------------------------------------------------------------------
    def _apply(self, live: _Live, step: _Step, msg: dict[str, Any]) -> None:
        kind = msg["k"]
        if not live.state.status.is_open or live.instance.finished:
            return
        if msg.get("run") not in (None, live.state.run_id):
            return  # for an earlier run of this id
        if kind == "signal":
            self._record(live, step, E.SIGNAL_RECEIVED, {"name": msg["name"], "payload": msg.get("payload"),
                                                          "sender_id": msg.get("sender_id")})
        elif kind == "cancel":
            if not live.instance.cancel_requested:
                self._record(live, step, E.CANCEL_REQUESTED, {})
        elif kind == "timer":
            if live.instance.is_pending(msg["seq"]):
                self._record(live, step, E.TIMER_FIRED, {"seq": msg["seq"]})
        elif kind == "timeout":
            self._emit(live, step, [Event(live.version + len(step.events) + 1, E.WORKFLOW_TIMED_OUT,
                                          time.time(), {})])
            self._close(live, step, WorkflowStatus.TIMED_OUT, None, {
                "type": "TimeoutError", "message": f"workflow {live.state.workflow_id} ran past its timeout",
                "traceback": "", "non_retryable": True})
        elif kind == "child_done":
            if live.instance.is_pending(msg["seq"]):
                if msg.get("ok"):
                    self._record(live, step, E.CHILD_WORKFLOW_COMPLETED, {"seq": msg["seq"],
                                                                          "result": msg.get("payload")})
                else:
                    self._record(live, step, E.CHILD_WORKFLOW_FAILED, {"seq": msg["seq"],
                                                                       "error": msg.get("payload")})
        elif kind == "activity":
            self._activity(live, step, msg)
        elif kind == "dispatch":
            task = live.tasks.get(msg["seq"])
            if task is not None and not task.get("running") and msg["attempt"] > task["attempt"] - 1:
                self._begin(live, step, msg["seq"], msg["attempt"])
        else:
            log.error("unknown inbox message kind %r for %s; dropped", kind, live.state.workflow_id)

    def _activity(self, live: _Live, step: _Step, msg: dict[str, Any]) -> None:
        seq, attempt = msg["seq"], msg["attempt"]
        task = live.tasks.get(seq)
        if task is None or task["attempt"] != attempt:
            return  # a duplicate or a stale attempt
        if msg.get("ok"):
            del live.tasks[seq]
            self._record(live, step, E.ACTIVITY_COMPLETED, {"seq": seq, "attempt": attempt,
                                                             "result": msg.get("payload")})
            return
        failure = msg.get("payload") or {}
        if "retry_in" in msg:      # the task decided, and Celery's retry runs the next attempt
            delay, by_celery = msg["retry_in"], msg.get("celery_retry", False)
        else:                      # the worker was lost: decide here
            policy = RetryPolicy.from_dict(task["options"]["retry"]) if task["options"].get("retry") \
                else default_retry_policy()
            delay, by_celery = policy.next_delay(attempt, failure, self._rand.random()), False
        self._record(live, step, E.ACTIVITY_FAILED, {"seq": seq, "attempt": attempt, "error": failure,
                                                      "retry_in": delay})
        if delay is None:
            del live.tasks[seq]
            return
        task["running"] = False
        if by_celery:
            self._begin(live, step, seq, attempt + 1, send=False)
        else:
            wid, due = live.state.workflow_id, time.time() + delay
            dispatch = {"k": "dispatch", "run": live.state.run_id, "seq": seq, "attempt": attempt + 1}
            step.after.append(lambda: self.fleet.arm(wid, due, dispatch))

    # --- recording ------------------------------------------------------------------------------------
    def _record(self, live: _Live, step: _Step, type: str, attrs: dict[str, Any]) -> None:
        now = time.time()
        ev = Event(live.version + len(step.events) + 1, type, now, attrs)
        new = live.instance.activate((ev,))
        self._emit(live, step, [ev])
        if new:
            self._commands(live, step, new, now)

    def _emit(self, live: _Live, step: _Step, events: list[Event]) -> None:
        step.events.extend(events)

    def _commands(self, live: _Live, step: _Step, new: list[cmds.Command], now: float) -> None:
        base = live.version + len(step.events)
        self._emit(live, step, [cmds.to_event(c, base + i + 1, now) for i, c in enumerate(new)])
        wid, rid = live.state.workflow_id, live.state.run_id
        for c in new:
            if isinstance(c, cmds.ScheduleActivity):
                live.tasks[c.seq] = {"name": c.name, "input": c.input, "options": self._options(c),
                                     "attempt": 0}
                self._begin(live, step, c.seq, 1)
            elif isinstance(c, cmds.StartTimer):
                timer = {"k": "timer", "run": rid, "seq": c.seq}
                step.after.append(lambda due=now + c.duration, timer=timer: self.fleet.arm(wid, due, timer))
            elif isinstance(c, cmds.StartChildWorkflow):
                link = {"workflow_id": wid, "run_id": rid, "seq": c.seq}
                step.after.append(lambda c=c, link=link: self.start_child(c, link, live.state.queue))
            elif isinstance(c, cmds.ContinueAsNew):
                live.state = _with(live.state, status=WorkflowStatus.COMPLETED)
                step.after.append(lambda c=c: self.start_child(None, None, live.state.queue,
                                                               continue_from=live.state, input=c.input))
            elif type(c) in _CLOSE:
                self._close(live, step, _CLOSE[type(c)], getattr(c, "result", None), getattr(c, "error", None))

    def _options(self, c: cmds.ScheduleActivity) -> dict[str, Any]:
        options = dict(c.options)
        defn = self.registry.activities.get(c.name)
        if defn is not None:
            if "retry" not in options and defn.retry is not None:
                options["retry"] = defn.retry.to_dict()
            for key in ("timeout", "heartbeat_timeout", "queue"):
                if key not in options and getattr(defn, key) is not None:
                    options[key] = getattr(defn, key)
        options.setdefault("retry", default_retry_policy().to_dict())
        return options

    def _begin(self, live: _Live, step: _Step, seq: int, attempt: int, send: bool = True) -> None:
        task = live.tasks[seq]
        task["attempt"], task["running"] = attempt, True
        self._record(live, step, E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt})
        if send:
            wid, rid = live.state.workflow_id, live.state.run_id
            step.after.append(lambda: self.dispatch(wid, rid, seq, attempt, task["name"], task["input"],
                                                    task["options"], task.get("details")))

    def _close(self, live: _Live, step: _Step, status: WorkflowStatus, result: Any,
               error: dict[str, Any] | None) -> None:
        live.state = _with(live.state, status=status, result=result, error=error)
        step.status, step.result, step.error = status, result, error
        parent = live.state.parent
        if parent:
            ok = status is WorkflowStatus.COMPLETED
            payload = result if ok else (error or {
                "type": "WorkflowCancelled" if status is WorkflowStatus.CANCELED else "WorkflowError",
                "message": f"child workflow {live.state.workflow_id} ended {status.value}",
                "traceback": "", "non_retryable": True})
            msg = {"k": "child_done", "run": parent["run_id"], "seq": parent["seq"], "ok": ok,
                   "payload": payload}

            def notify() -> None:
                self.fleet.push(parent["workflow_id"], msg)
                self.wake(parent["workflow_id"], None)

            step.after.append(notify)


def _with(state: WorkflowState, **changes: Any) -> WorkflowState:
    from dataclasses import replace

    return replace(state, **changes)

