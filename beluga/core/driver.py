"""The run driver: everything between "an input arrived" and "these events were recorded and these
effects are due", once, for every executor. Pure: time and randomness are arguments.

An executor loads a run (`load`), opens a `Step`, applies inputs to it one by one (`apply`), writes
`step.events` in one conditional append, and then carries out `step.effects`. The in-process engine,
the fleet coordinator and the Temporal workflow keep only their I/O (Temporal also its own retries and
determinism checks); what an input records, when an attempt is retried, how a run closes and what a
stuck run does are decided here.

A run whose code is missing or no longer matches its history is *stuck*: it keeps recording its inputs
(marked `deferred`, their commands owed) and runs no code, so nothing is lost or invented; the reason
is kept in the run's summary (`error`) until matching code resumes it and processes what waited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from beluga.core import commands as cmds
from beluga.core import steps as s
from beluga.core.definitions import WorkflowDefinition
from beluga.core.errors import ConfigurationError, NonDeterminismError
from beluga.core.failure import terminated, to_failure, unreadable, workflow_timed_out
from beluga.core.instance import WorkflowInstance
from beluga.core.limits import Granted, Holder, Refused
from beluga.core.pending import Pending, fold, pending_work
from beluga.core.priority import DEFAULT, effective_priority
from beluga.core.records import Event, EventType, ParentClosePolicy, WorkflowState, WorkflowStatus
from beluga.core.retry import GiveUp, Retry, RetryPolicy, decide_retry, retry_delay
from beluga.core.search import merged

E = EventType
_CLOSE_STATUS = {cmds.CompleteWorkflow: WorkflowStatus.COMPLETED, cmds.FailWorkflow: WorkflowStatus.FAILED,
                 cmds.CancelWorkflow: WorkflowStatus.CANCELED}
Lookup = Callable[[str], WorkflowDefinition]
Policy = Callable[[str, dict[str, Any]], RetryPolicy]
# Asks for an attempt's rate/concurrency permit: (activity name, input, the attempt, now) -> None when its
# activity has no limit, `Granted` (when it starts), or `Refused` (when to ask again): core/limits.py.
# The executor's I/O.
PermitAsk = Callable[[str, Any, Holder, float], Granted | Refused | None]


class RunDriver:
    """One open run in memory: its summary, its version, what it waits for, and its live instance
    (None while stuck)."""

    def __init__(self, state: WorkflowState, version: int, pending: Pending, instance: WorkflowInstance | None,
                 policy: Policy, stuck: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 permit: PermitAsk | None = None, priority: int | None = None) -> None:
        self.state = state            # summary only: the history lives in the store
        self.version = version
        self.pending = pending
        self.instance = instance
        self.policy = policy
        self.stuck = stuck
        self.headers = headers        # the context the run was started with (trace context), for its activities
        self.permit = permit          # None: the executor enforces no activity limits
        self.priority = priority      # the run's (core/priority.py), its activities' where a call sets none
        # some of the run's latest events as its adapter encoded them, and the version they end at (the
        # adapter's to keep: the fleet hands them to the process that takes the next step, see
        # coordinator.CARRIED)
        self.tail: tuple[int, list[bytes]] = (0, [])

    @property
    def workflow_id(self) -> str:
        return self.state.workflow_id

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def is_open(self) -> bool:
        return self.state.status.is_open

    # --- steps -----------------------------------------------------------------------------------------
    def begin(self) -> s.Step:
        return s.Step(self.version)

    def apply(self, step: s.Step, input: s.Input, now: float, rand: float) -> bool:
        """Record `input` and what the workflow does in reaction. False when the run has no use for it
        (closed, or a late or duplicate message), so the caller can tell a sender it came too late. A
        repeated cancel request is accepted and records nothing: cancelling is idempotent."""
        if step.closing is not None:
            if isinstance(input, s.SignalReceived):  # arrived as the run closed: kept, before the close
                self._late_signal(step, input, now)
                return True
            return False
        if not self.is_open:
            return False
        p = self.pending
        if isinstance(input, s.SignalReceived):
            step.effects.append(s.Observed("on_signal", input))
            self._record(step, E.SIGNAL_RECEIVED, _signal_attrs(input), now)
        elif isinstance(input, s.UpdateRequested):
            if input.update_id in p.updates:
                return False  # a retry of an update already accepted: its first outcome stands
            self._record(step, E.UPDATE_ACCEPTED, {"update_id": input.update_id, "name": input.name,
                                                   "args": list(input.args), **_who(input.identity)}, now)
        elif isinstance(input, s.CancelRequested):
            if p.cancel_requested:
                return True
            if self._never_ran():  # its code is unknown and it never ran: no cleanup can be owed
                self._note(step, E.CANCEL_REQUESTED, _who(input.identity), now)
                self._note(step, E.WORKFLOW_CANCELED, {}, now)
                self._close(step, WorkflowStatus.CANCELED, None, None)
            else:
                self._record(step, E.CANCEL_REQUESTED, _who(input.identity), now)
        elif isinstance(input, s.Terminate):
            self._note(step, E.WORKFLOW_TERMINATED, {"reason": input.reason, **_who(input.identity)}, now)
            self._close(step, WorkflowStatus.CANCELED, None, terminated(self.workflow_id, input.reason))
        elif isinstance(input, s.TimerFired):
            if input.seq not in p.timers:
                return False  # fired already (re-armed after a recovery)
            self._record(step, E.TIMER_FIRED, {"seq": input.seq}, now)
        elif isinstance(input, s.TimedOut):
            self._note(step, E.WORKFLOW_TIMED_OUT, {}, now)
            self._close(step, WorkflowStatus.TIMED_OUT, None, workflow_timed_out(self.workflow_id))
        elif isinstance(input, s.ChildClosed):
            if input.seq not in p.children:
                return False
            if input.ok:
                self._record(step, E.CHILD_WORKFLOW_COMPLETED, {"seq": input.seq, "result": input.payload}, now)
            else:
                self._record(step, E.CHILD_WORKFLOW_FAILED, {"seq": input.seq, "error": input.payload}, now)
        elif isinstance(input, s.ActivityOutcome):
            return self._outcome(step, input, now, rand)
        elif isinstance(input, s.AttemptDue):
            act = p.activities.get(input.seq)
            if act is None or act.started or act.attempt != input.attempt:
                return False
            self._begin_attempt(step, input.seq, input.attempt, now)
        else:
            raise TypeError(f"not a run input: {input!r}")
        return True

    def seal(self, step: s.Step) -> s.Step:
        """Number the step's events in the order they are written (signals that arrived as the run
        closed stand before the close) and count them into the run's version."""
        step.events = [ev if ev.id == step.expected + i + 1 else replace(ev, id=step.expected + i + 1)
                       for i, ev in enumerate(step.events)]
        self.version = step.expected + len(step.events)
        step.closing = None
        return step

    def catch_up(self, events: Sequence[Event]) -> bool:
        """Apply events another process appended. False when this instance cannot follow them (it
        diverges, or the events owe commands): the caller reloads the run from the store."""
        if self.instance is None:
            return False
        try:
            if self.instance.activate(events):
                return False
        except NonDeterminismError:
            return False
        for ev in events:
            fold(self.pending, ev)
            if ev.type == E.SEARCH_ATTRIBUTES_UPSERTED:
                self._upserted(ev.attrs.get("attributes") or {})
        self.version += len(events)
        return True

    def _upserted(self, attributes: dict[str, Any]) -> None:
        """The run's summary after an upsert (recorded here, or by another process)."""
        self.state = replace(self.state, search_attributes=merged(self.state.search_attributes, attributes))

    def close(self) -> None:
        if self.instance is not None:
            self.instance.close()

    # --- recording -------------------------------------------------------------------------------------
    def _next_id(self, step: s.Step) -> int:
        return step.expected + len(step.events) + 1

    def _emit(self, step: s.Step, events: list[Event]) -> None:
        step.events.extend(events)
        for ev in events:
            fold(self.pending, ev)

    def _note(self, step: s.Step, type: str, attrs: dict[str, Any], now: float) -> None:
        """An informational event (an attempt began, the deadline passed): no code reacts to it, but a
        live instance counts it, so the next input's position is right."""
        ev = Event(self._next_id(step), type, now, attrs)
        if self.instance is not None and step.closing is None:
            self.instance.activate((ev,), recording=True)
        self._emit(step, [ev])

    def _record(self, step: s.Step, type: str, attrs: dict[str, Any], now: float) -> None:
        """One input event, then the commands the workflow issues in reaction. A stuck run records the
        input deferred: its commands are owed until matching code runs."""
        if self.instance is None:
            self._emit(step, [Event(self._next_id(step), type, now, {**attrs, "deferred": True})])
            return
        ev = Event(self._next_id(step), type, now, attrs)
        new = self.instance.activate((ev,), recording=True)
        self._emit(step, [ev])
        if new:
            self.commands(step, new, now)

    def commands(self, step: s.Step, new: list[cmds.Command], now: float) -> None:
        """Record commands the workflow issued and turn them into effects."""
        input_at = len(step.events) - 1
        base = self._next_id(step)
        self._emit(step, [cmds.to_event(c, base + i, now) for i, c in enumerate(new)])
        closes = isinstance(new[-1], cmds.CLOSING_COMMANDS)
        for c in new:
            if isinstance(c, cmds.ScheduleActivity):
                if not closes:  # nothing runs for a run that closes in the same step
                    self._begin_attempt(step, c.seq, 1, now)
            elif isinstance(c, cmds.StartTimer):
                step.effects.append(s.ArmTimer(c.seq, now + c.duration))
            elif isinstance(c, cmds.CompleteUpdate):
                step.effects.append(s.UpdateCompleted(c.update_id, c.error is None,
                                                      c.result if c.error is None else c.error))
            elif isinstance(c, cmds.UpsertSearchAttributes):
                self._upserted(c.attributes)
                step.search_attributes = self.state.search_attributes
            elif isinstance(c, cmds.StartChildWorkflow):
                step.effects.append(s.StartChild(c.seq, c.workflow_type, c.workflow_id, c.input,
                                                 c.parent_close_policy))
            elif isinstance(c, cmds.ContinueAsNew):
                self.state = replace(self.state, status=WorkflowStatus.COMPLETED)  # its id lives on
                step.effects.append(s.ContinueAsNew(c.input))
                self._close_children(step, "continued as new")
                step.closing = input_at if input_at >= 0 else None
            elif type(c) in _CLOSE_STATUS:
                result = c.result if isinstance(c, cmds.CompleteWorkflow) else None
                error = c.error if isinstance(c, cmds.FailWorkflow) else None
                self._close(step, _CLOSE_STATUS[type(c)], result, error)
                step.closing = input_at if input_at >= 0 else None

    def _never_ran(self) -> bool:
        return (self.instance is None and self.stuck is not None and self.stuck.get("type") == "ConfigurationError"
                and self.version == 1)

    def _outcome(self, step: s.Step, out: s.ActivityOutcome, now: float, rand: float) -> bool:
        act = self.pending.activities.get(out.seq)
        if act is None or not act.started or (act.attempt != out.attempt and not out.final):
            return False  # a duplicate, or a late report of an attempt that was superseded
        seq, attempt = out.seq, out.attempt
        if self.permit is not None:
            step.effects.append(s.ReturnPermit(seq, act.attempt, act.name, act.input))
        if out.ok:
            step.effects.append(s.Observed("on_activity_complete", out.payload))
            self._record(step, E.ACTIVITY_COMPLETED, {"seq": seq, "attempt": attempt, "result": out.payload}, now)
            step.effects.append(s.ActivityClosed(act.name, act.options, now - act.scheduled))
            return True
        error = out.payload or {}
        decision = (GiveUp("the sender ran every attempt") if out.final else out.decision if out.decision is not None
                    else decide_retry(self.policy(act.name, act.options), error, attempt, rand,
                                      retry_afters=act.retry_afters))
        delay = retry_delay(decision)
        self._record(step, E.ACTIVITY_FAILED, {"seq": seq, "attempt": attempt, "error": error, "retry_in": delay},
                     now)
        if delay is None:
            step.effects.append(s.ActivityClosed(act.name, act.options, now - act.scheduled))
            return True
        if isinstance(decision, Retry) and decision.by_sender:
            self._note(step, E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt + 1}, now)
        else:
            step.effects.append(s.ArmRetry(seq, attempt + 1, now + delay, error))
        return True

    def _begin_attempt(self, step: s.Step, seq: int, attempt: int, now: float) -> None:
        act = self.pending.activities[seq]
        priority = effective_priority(act.options.get("priority"), self.priority)
        permit = (None if self.permit is None else
                  self.permit(act.name, act.input, Holder(self.workflow_id, self.run_id, seq, attempt, priority), now))
        if isinstance(permit, Refused):  # it waits on a durable timer, holding no worker; not a failure
            key, why = permit.key, permit.why
            self._note(step, E.ACTIVITY_WAITING, {"seq": seq, "attempt": attempt, "until": permit.until,
                                                  "limit": key, "why": why}, now)
            step.effects.append(s.AwaitPermit(seq, attempt, permit.until, key, why))
            return
        start_at = permit.start_at if isinstance(permit, Granted) and permit.start_at > now else None
        self._note(step, E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt,
                                              **({} if start_at is None else {"start_at": start_at})}, now)
        # the run's priority goes with the attempt too (its broker message's priority, see core/priority.py)
        options = (act.options if priority == act.options.get("priority", DEFAULT)
                   else {**act.options, "priority": priority})
        step.effects.append(s.DispatchAttempt(seq, attempt, act.name, act.input, options, start_at))

    def _close(self, step: s.Step, status: WorkflowStatus, result: Any, error: dict[str, Any] | None) -> None:
        if self.permit is not None:  # attempts still running (or waiting for a permit) when the run closes
            step.effects.extend(s.ReturnPermit(seq, act.attempt, act.name, act.input)
                                for seq, act in self.pending.activities.items() if act.started or act.limit)
        self.state = replace(self.state, status=status, result=result, error=error)
        step.status, step.result = status, result
        if error is not None:
            step.error = error
        step.effects.append(s.RunClosed(status, result, error))
        self._close_children(step, status.value)

    def _close_children(self, step: s.Step, how: str) -> None:
        """The run closed: its children still open get their parent-close policy (see `s.CloseChildren`).
        Temporal applies the policy on a continue-as-new too, and so does every executor: the next run
        does not own the children of this one."""
        children = children_to_close(self.pending)
        if children:
            step.effects.append(s.CloseChildren(self.run_id, f"parent workflow {self.workflow_id} {how}", children))

    def _late_signal(self, step: s.Step, sig: s.SignalReceived, now: float) -> None:
        """A signal that arrived while the run was closing is recorded before the close, as Temporal does:
        the closing input and such signals are `deferred`, so replay carries the close past them."""
        at = step.closing
        assert at is not None
        step.events[at] = _deferred(step.events[at])
        for i in range(at + 1, at + 1 + step.late):
            step.events[i] = _deferred(step.events[i])
        ev = Event(0, E.SIGNAL_RECEIVED, now, {**_signal_attrs(sig), "deferred": True})
        step.events.insert(at + 1 + step.late, ev)
        step.late += 1
        step.effects.insert(0, s.Observed("on_signal", sig))


def _who(identity: str | None) -> dict[str, Any]:
    """The `identity` attribute of an operator's input: recorded only when the caller named one."""
    return {} if identity is None else {"identity": identity}


def _signal_attrs(sig: s.SignalReceived) -> dict[str, Any]:
    return {"name": sig.name, "payload": sig.payload, "sender_id": sig.sender_id, **_who(sig.identity)}


def children_to_close(pending: Pending) -> tuple[s.ChildToClose, ...]:
    """The open children of a run and their parent-close policies, abandoned ones left out. A child
    recorded without a policy was started before parent-close policies existed: it is left running, as
    it was promised then."""
    out = []
    for seq, child in sorted(pending.children.items()):
        policy = child.get("parent_close_policy") or ParentClosePolicy.ABANDON.value
        if policy != ParentClosePolicy.ABANDON.value:
            out.append(s.ChildToClose(seq, str(child.get("workflow_id")), policy))
    return tuple(out)


def _deferred(ev: Event) -> Event:
    return ev if ev.attrs.get("deferred") else replace(ev, attrs={**ev.attrs, "deferred": True})


# --- loading ---------------------------------------------------------------------------------------------
def load(state: WorkflowState, workflows: Lookup, policy: Policy, *, check_payload: Callable[[Any], Any],
         now: float, instance_type: type[WorkflowInstance] = WorkflowInstance, permit: PermitAsk | None = None
         ) -> tuple[RunDriver, s.Step]:
    """Bring an open run into memory by replaying its history. The returned step records what was owed
    (the first activation's commands, or what a resumed stuck run does with the inputs it kept) and
    the run's stuck reason when it changed; it may be empty. A run its store could not read whole
    (`failure.unreadable`) raises `UnreadableRun` (`HistoryLost`): the adapter holds it stuck.
    `instance_type` runs the code (an executor may answer side effects and patches through its own
    server). `permit`: how the executor asks for activities' rate and concurrency permits."""
    damaged = unreadable(state)
    if damaged is not None:  # a store said its history is not whole: never replayed, never extended
        raise damaged
    history = state.history
    summary = replace(state, history=())
    pending = pending_work(history)
    instance: WorkflowInstance | None = None
    stuck: dict[str, Any] | None = None
    new: list[cmds.Command] = []
    try:
        instance = instance_type(workflows(state.workflow_type), state.workflow_id, state.run_id,
                                 check_payload=check_payload)
        new = instance.activate(history)
    except (NonDeterminismError, ConfigurationError) as exc:
        if instance is not None:
            instance.close()
        instance, stuck = None, to_failure(exc)
        if getattr(exc, "position", None):  # where the code diverged: `reset --to last-good` goes back before it
            stuck["position"] = exc.position
    headers = history[0].attrs.get("headers") if history else None
    priority = history[0].attrs.get("priority") if history else None
    driver = RunDriver(summary, len(history), pending, instance, policy, stuck, headers, permit, priority)
    step = driver.begin()
    if stuck is not None:
        if not _same_reason(state.error, stuck):
            step.error = stuck
        driver.state = replace(summary, error=stuck)
    elif state.error:  # it was stuck; the code matches its history again
        step.error = {}
        driver.state = replace(summary, error=None)
    if new:  # owed work is done now (a resumed stuck run's timers run from now, not from its input)
        driver.commands(step, new, now)
    return driver, step


def _same_reason(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return bool(old) and old.get("type") == new.get("type") and old.get("message") == new.get("message")


def read_only(state: WorkflowState, workflows: Lookup, *, check_payload: Callable[[Any], Any]) -> WorkflowInstance:
    """An instance that replays a run (open or closed) only to answer its query handlers: a side effect
    not yet recorded is never run, and nothing it asks for is recorded. A run its store could not read
    whole raises `UnreadableRun`, as `load` does."""
    damaged = unreadable(state)
    if damaged is not None:
        raise damaged
    instance = WorkflowInstance(workflows(state.workflow_type), state.workflow_id, state.run_id,
                                check_payload=check_payload, read_only=True)
    instance.activate([ev for ev in state.history if ev.type != E.WORKFLOW_TIMED_OUT], recording=True)
    return instance
