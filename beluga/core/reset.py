"""Reset: a new run of the same id whose history is the old run's up to a workflow-task boundary, from
where the *current* code decides what follows. Pure: the executor draws the run id and reads the clock.

A boundary is an input the workflow code reacted to (its start, an activity's or child's end, a timer, a
signal, an update, a cancel request): the new run keeps every event up to and including that input and
drops the rest, the commands the code issued in reaction to it included. The kept input is marked
`deferred` (see `WorkflowInstance.activate`): its commands are owed, so loading the new run replays the
kept events and records what the current code now asks for, exactly as a stuck run resumes.

Signals recorded after the point are applied again, in their order (Temporal's default reapply type):
they are appended as deferred inputs after the point, so the code sees them as it did. Updates and
cancel requests after the point are dropped (reported), as are activity results: an activity whose
result came after the point runs again if the current code asks for it. What was in flight at the point is
taken up as after a crash (`in_flight`): timers and backoffs fire at their times, and an attempt that was
running failed (`AttemptLost`) and its retry policy decides. A point inside a
child workflow's life (started, not yet closed) is refused: the child belongs to the old run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from beluga.core.failure import failure
from beluga.core.pending import pending_work
from beluga.core.records import Event, EventType, WorkflowState, WorkflowStatus
from beluga.core.recovery import ArmDeadline, AttemptInterrupted, Obligation, TakeStep, owed

E = EventType
FIRST, LAST_GOOD = "first", "last-good"
_ALWAYS_INPUTS = frozenset({E.WORKFLOW_STARTED, E.ACTIVITY_COMPLETED, E.CHILD_WORKFLOW_COMPLETED,
                            E.CHILD_WORKFLOW_FAILED, E.TIMER_FIRED, E.SIGNAL_RECEIVED, E.UPDATE_ACCEPTED,
                            E.CANCEL_REQUESTED})


class ResetError(ValueError):
    """The reset point given is not one a run can be reset to (the message says why, and what is)."""


def is_input(ev: Event) -> bool:
    """Whether the workflow code reacted to `ev` (a failed attempt that is retried is not seen by it)."""
    if ev.type == E.ACTIVITY_FAILED:
        return ev.attrs.get("retry_in") is None
    return ev.type in _ALWAYS_INPUTS


def boundaries(history: tuple[Event, ...] | list[Event]) -> list[int]:
    """The event ids a run can be reset to, in order: inputs outside any child workflow's life."""
    out, open_children = [], 0
    for ev in history:
        if ev.type == E.CHILD_WORKFLOW_STARTED:
            open_children += 1
        elif ev.type in (E.CHILD_WORKFLOW_COMPLETED, E.CHILD_WORKFLOW_FAILED):
            open_children -= 1
        if is_input(ev) and open_children == 0:
            out.append(ev.id)
    return out


def first_failure(history: tuple[Event, ...] | list[Event]) -> Event | None:
    """The run's first failure: an activity or child that failed for good, or the run's own failure."""
    for ev in history:
        if ((ev.type == E.ACTIVITY_FAILED and ev.attrs.get("retry_in") is None)
                or ev.type in (E.CHILD_WORKFLOW_FAILED, E.WORKFLOW_FAILED, E.WORKFLOW_TIMED_OUT)):
            return ev
    return None


def resolve(history: tuple[Event, ...] | list[Event], to: int | str, stuck_at: int | None = None) -> int:
    """The event id `to` names: an event id (it must be a boundary), "first" (right after the run
    started) or "last-good" (the last boundary before the step that led to the first failure: for a
    failed activity or child, before the step that scheduled it; for a run held stuck because its code
    no longer matches its history, before the event where it diverged, `stuck_at`)."""
    points = boundaries(history)
    if to == FIRST:
        return 1
    if to == LAST_GOOD:
        anchors = [a for a in (_failure_anchor(history), stuck_at) if a is not None]
        if not anchors:
            raise ResetError("the run has no failure to reset before (no failed activity, child or run, and "
                             "it is not stuck on a mismatch); give an event id or 'first'")
        anchor = min(anchors)
        before = [p for p in points if p < anchor]
        if not before:
            raise ResetError(f"no reset point before event #{anchor}")
        return before[-1]
    try:
        event_id = int(to)
    except (TypeError, ValueError):
        raise ResetError(f"reset point {to!r}: give an event id, 'first' or 'last-good'") from None
    if not 1 <= event_id <= len(history):
        raise ResetError(f"the run has no event #{event_id} (it has {len(history)})")
    if event_id not in points:
        ev = history[event_id - 1]
        near = _nearest(points, event_id)
        raise ResetError(f"event #{event_id} ({ev.type}) is not a workflow-task boundary: reset to an input the "
                         f"code reacted to (a start, an activity's or child's end, a timer, a signal, an update "
                         f"or a cancel request) outside a child's life; the nearest are {near}")
    return event_id


def _failure_anchor(history: tuple[Event, ...] | list[Event]) -> int | None:
    """Where the step that led to the first failure began (see `resolve`), or None without a failure."""
    failure = first_failure(history)
    if failure is None:
        return None
    if failure.type in (E.ACTIVITY_FAILED, E.CHILD_WORKFLOW_FAILED):
        kind = E.ACTIVITY_SCHEDULED if failure.type == E.ACTIVITY_FAILED else E.CHILD_WORKFLOW_STARTED
        return next((ev.id for ev in history if ev.type == kind
                     and ev.attrs.get("seq") == failure.attrs.get("seq")), failure.id)
    return failure.id


def _nearest(points: list[int], event_id: int) -> str:
    before = [p for p in points if p < event_id][-1:]
    after = [p for p in points if p > event_id][:1]
    return " and ".join(f"#{p}" for p in before + after) or "none"


@dataclass(frozen=True)
class ResetPlan:
    """What a reset keeps and throws away; `state` is the new run, not yet stored."""

    state: WorkflowState
    point: int                                   # the event the new run's history ends at (before reapplied)
    dropped_events: int                          # events of the old run past the point
    discarded_activities: list[dict[str, Any]] = field(default_factory=list)  # {seq, name}: results thrown away
    reapplied_signals: list[str] = field(default_factory=list)                # names, in order
    dropped_updates: list[str] = field(default_factory=list)                  # update ids
    dropped_cancel: bool = False                 # a cancel request after the point is not applied again

    def report(self) -> dict[str, Any]:
        return {"workflow_id": self.state.workflow_id, "run_id": self.state.run_id, "point": self.point,
                "dropped_events": self.dropped_events, "discarded_activities": self.discarded_activities,
                "reapplied_signals": self.reapplied_signals, "dropped_updates": self.dropped_updates,
                "dropped_cancel": self.dropped_cancel}


def plan_reset(old: WorkflowState, to: int | str, *, run_id: str, now: float, identity: str | None = None,
               reapply_signals: bool = True) -> ResetPlan:
    """The new run of `old` (closed, its history whole) reset to `to` (see `resolve`)."""
    if old.status.is_open:
        raise ResetError(f"workflow {old.workflow_id} is still running: close it before planning a reset")
    history = old.history
    point = resolve(history, to)
    kept, rest = list(history[:point]), history[point:]
    started = kept[0]
    attrs = dict(started.attrs)
    if attrs.get("deadline") is not None:  # the same time allowed, counted from the reset
        attrs["deadline"] = now + (attrs["deadline"] - started.timestamp)
    attrs["reset"] = {"from_run": old.run_id, "to_event": point, **({"identity": identity} if identity else {})}
    kept[0] = replace(started, attrs=attrs)
    if point > 1:
        kept[-1] = replace(kept[-1], attrs={**kept[-1].attrs, "deferred": True})
    signals = [ev for ev in rest if ev.type == E.SIGNAL_RECEIVED] if reapply_signals else []
    for ev in signals:
        kept.append(Event(len(kept) + 1, E.SIGNAL_RECEIVED, ev.timestamp,
                          {**ev.attrs, "deferred": True, "reapplied": True}))
    state = replace(old, run_id=run_id, status=WorkflowStatus.RUNNING, result=None, error=None, updated_at=now,
                    history=tuple(kept))
    names = {ev.attrs.get("seq"): ev.attrs.get("name") for ev in history if ev.type == E.ACTIVITY_SCHEDULED}
    ended = [ev.attrs.get("seq") for ev in rest if ev.type == E.ACTIVITY_COMPLETED or (
        ev.type == E.ACTIVITY_FAILED and ev.attrs.get("retry_in") is None)]
    return ResetPlan(state, point, len(rest), [{"seq": s, "name": names.get(s)} for s in ended],
                     [str(ev.attrs.get("name")) for ev in signals],
                     [str(ev.attrs.get("update_id")) for ev in rest if ev.type == E.UPDATE_ACCEPTED],
                     any(ev.type == E.CANCEL_REQUESTED for ev in rest)
                     and not pending_work(kept).cancel_requested)


def in_flight(state: WorkflowState) -> list[Obligation]:
    """What the reset run `state` had in flight at its point, for its executor to take up as after a crash:
    timers and retry backoffs to re-arm, attempts that were running to fail (`AttemptLost`: the old run
    got their results; the retry policy decides). Its first step and deadline come with its start."""
    out: list[Obligation] = []
    for obligation in owed(state):
        if isinstance(obligation, AttemptInterrupted):
            obligation = AttemptInterrupted(obligation.seq, obligation.attempt, failure(
                "AttemptLost", f"attempt {obligation.attempt} was running at the reset point: its result went to "
                               "the old run"))
        if not isinstance(obligation, (ArmDeadline, TakeStep)):
            out.append(obligation)
    return out
