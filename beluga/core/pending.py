"""What a run is waiting for, read from its history alone, so that any process can pick a run up after
a crash: activities to (re)dispatch and when, timers and when they fire, children still running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beluga.core.records import CLOSING_EVENTS, Event, EventType

E = EventType


@dataclass(slots=True)
class PendingActivity:
    seq: int
    name: str
    input: Any
    options: dict[str, Any]
    attempt: int = 1          # the attempt to run next
    not_before: float = 0.0   # epoch seconds; a retry backoff that is still running
    started: bool = False     # whether `attempt` had started (and so was interrupted)
    scheduled: float = 0.0    # epoch seconds; when the activity was scheduled (its schedule-to-close from here)
    retry_afters: int = 0     # failed attempts that asked for their retry's delay (see RetryPolicy.next_delay)
    limit: str | None = None  # `attempt` waits for a permit of this limit ("rate"/"concurrency" in `limit_why`)
    limit_why: str = ""


@dataclass(slots=True)
class Pending:
    activities: dict[int, PendingActivity] = field(default_factory=dict)
    timers: dict[int, float] = field(default_factory=dict)          # seq -> fire_at
    children: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> child_workflow_started attrs
    deadline: float | None = None
    closed: bool = False
    cancel_requested: bool = False
    # update id -> its `update_completed` attrs, None while its handler runs: a retried update is
    # recognised by its id and answered with the first outcome
    updates: dict[str, dict[str, Any] | None] = field(default_factory=dict)


_OPTION_KEYS = ("retry", "timeout", "heartbeat_timeout", "queue", "schedule_to_start_timeout", "priority")


def find_update(history: list[Event] | tuple[Event, ...], update_id: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether update `update_id` was accepted in this history, and its `update_completed` attrs once
    its handler ended (the first outcome, which every retry of the update gets)."""
    accepted, done = False, None
    for ev in history:
        if ev.type == E.UPDATE_ACCEPTED and ev.attrs.get("update_id") == update_id:
            accepted = True
        elif ev.type == E.UPDATE_COMPLETED and ev.attrs.get("update_id") == update_id:
            done = dict(ev.attrs)
    return accepted, done


def pending_work(history: list[Event] | tuple[Event, ...]) -> Pending:
    """Fold a history into what is still outstanding."""
    out = Pending()
    for ev in history:
        fold(out, ev)
    return out


def fold(out: Pending, ev: Event) -> None:
    """Apply one more event to `out`: coordinators keep a `Pending` current as their runs advance."""
    a, t = ev.attrs, ev.type
    if t == E.WORKFLOW_STARTED:
        out.deadline = a.get("deadline")
    elif t == E.ACTIVITY_SCHEDULED:
        options = {k: a[k] for k in _OPTION_KEYS if a.get(k) is not None}
        out.activities[a["seq"]] = PendingActivity(a["seq"], a["name"], a.get("input"), options,
                                                   not_before=ev.timestamp, scheduled=ev.timestamp)
    elif t == E.ACTIVITY_STARTED:
        act = out.activities.get(a["seq"])
        if act is not None:
            act.attempt, act.started, act.limit = a.get("attempt", 1), True, None
    elif t == E.ACTIVITY_FAILED:
        act = out.activities.get(a["seq"])
        if act is None:
            return
        if a.get("retry_in") is None:
            del out.activities[a["seq"]]
        else:
            act.attempt = a.get("attempt", act.attempt) + 1
            act.retry_afters += isinstance(a.get("error"), dict) and "next_retry_delay" in a["error"]
            act.not_before = ev.timestamp + a["retry_in"]
            act.started = False
    elif t == E.ACTIVITY_WAITING:
        act = out.activities.get(a["seq"])
        if act is not None:
            act.attempt, act.started, act.not_before = a.get("attempt", act.attempt), False, a["until"]
            act.limit, act.limit_why = a.get("limit"), a.get("why", "")
    elif t == E.ACTIVITY_COMPLETED:
        out.activities.pop(a["seq"], None)
    elif t == E.TIMER_STARTED:
        out.timers[a["seq"]] = a["fire_at"]
    elif t == E.TIMER_FIRED:
        out.timers.pop(a["seq"], None)
    elif t == E.CHILD_WORKFLOW_STARTED:
        out.children[a["seq"]] = dict(a)
    elif t in (E.CHILD_WORKFLOW_COMPLETED, E.CHILD_WORKFLOW_FAILED):
        out.children.pop(a["seq"], None)
    elif t == E.CANCEL_REQUESTED:
        out.cancel_requested = True
    elif t == E.UPDATE_ACCEPTED:
        out.updates.setdefault(str(a["update_id"]), None)
    elif t == E.UPDATE_COMPLETED:
        out.updates[str(a["update_id"])] = dict(a)
    elif t in CLOSING_EVENTS:
        out.closed = True
