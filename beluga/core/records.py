"""Plain, frozen records that stores persist and processes exchange. No behaviour lives here.

Histories outlive releases, so every persisted record carries `SCHEMA_VERSION`; the codec refuses a
version it does not know instead of guessing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from beluga.core.search import check_where

SCHEMA_VERSION = 1


class WorkflowStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"

    @property
    def is_open(self) -> bool:
        return self is WorkflowStatus.RUNNING

    def __str__(self) -> str:
        return self.value


class EventType:
    """History event types. The reference's nine come first; the rest are what replay needs."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELED = "workflow_canceled"
    ACTIVITY_STARTED = "activity_started"
    ACTIVITY_COMPLETED = "activity_completed"
    ACTIVITY_FAILED = "activity_failed"
    SIGNAL_RECEIVED = "signal_received"
    TIMER_FIRED = "timer_fired"

    ACTIVITY_SCHEDULED = "activity_scheduled"
    TIMER_STARTED = "timer_started"
    MARKER_RECORDED = "marker_recorded"
    CHILD_WORKFLOW_STARTED = "child_workflow_started"
    CHILD_WORKFLOW_COMPLETED = "child_workflow_completed"
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"
    CANCEL_REQUESTED = "workflow_cancel_requested"
    WORKFLOW_TIMED_OUT = "workflow_timed_out"
    WORKFLOW_CONTINUED_AS_NEW = "workflow_continued_as_new"
    WORKFLOW_TERMINATED = "workflow_terminated"  # closed by an operator; no workflow code ran
    UPDATE_ACCEPTED = "update_accepted"    # an update passed its validator: its handler runs (an input)
    UPDATE_COMPLETED = "update_completed"  # its handler returned or raised (a command): the caller's answer
    SEARCH_ATTRIBUTES_UPSERTED = "search_attributes_upserted"  # ctx.upsert_search_attributes (a command)
    ACTIVITY_WAITING = "activity_waiting"  # an attempt waits for a rate or concurrency permit (core/limits.py)


# Events the workflow code itself caused (one per command); replay checks them against the code.
COMMAND_EVENTS = frozenset({
    EventType.ACTIVITY_SCHEDULED,
    EventType.TIMER_STARTED,
    EventType.MARKER_RECORDED,
    EventType.CHILD_WORKFLOW_STARTED,
    EventType.WORKFLOW_COMPLETED,
    EventType.WORKFLOW_FAILED,
    EventType.WORKFLOW_CANCELED,
    EventType.WORKFLOW_CONTINUED_AS_NEW,
    EventType.UPDATE_COMPLETED,
    EventType.SEARCH_ATTRIBUTES_UPSERTED,
})

# Events that close a run: nothing may be appended after one of them.
CLOSING_EVENTS = frozenset({
    EventType.WORKFLOW_COMPLETED,
    EventType.WORKFLOW_FAILED,
    EventType.WORKFLOW_CANCELED,
    EventType.WORKFLOW_TIMED_OUT,
    EventType.WORKFLOW_CONTINUED_AS_NEW,
    EventType.WORKFLOW_TERMINATED,
})


class ParentClosePolicy(str, enum.Enum):
    """What happens to a child workflow still open when its parent's run closes (completes, fails, is
    cancelled, terminated, times out or continues as new), as in Temporal: `TERMINATE` (the default) closes
    it at once, `REQUEST_CANCEL` asks it to cancel (its cleanup runs), `ABANDON` leaves it running."""

    TERMINATE = "terminate"
    REQUEST_CANCEL = "request_cancel"
    ABANDON = "abandon"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's history. `id` is its 1-based position; `timestamp` is epoch seconds, set by
    the executor when it records the event (the core reads time only from here)."""

    id: int
    type: str
    timestamp: float
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    payload: Any = None
    sent_at: float | None = None
    sender_id: str | None = None
    request_id: str | None = None  # a retry with the same id is recorded once (the fleet client)


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """A run as a store holds it: the summary fields plus the whole event history."""

    workflow_id: str
    run_id: str
    workflow_type: str
    status: WorkflowStatus = WorkflowStatus.RUNNING
    input: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    history: tuple[Event, ...] = ()
    queue: str | None = None
    parent: dict[str, Any] | None = None  # {"workflow_id", "run_id", "seq"} of a parent workflow
    # typed business keys the run is listed by (beluga/core/search.py), and a payload shown with it
    search_attributes: dict[str, Any] = field(default_factory=dict)
    memo: Any = None

    @property
    def version(self) -> int:
        """How many events the history holds; the expected version of the next append."""
        return len(self.history)


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """Which runs a store lists, newest first (`created_at`, then `workflow_id`, descending), at most `limit`.

    `id_prefix` keeps the ids that start with it; `stuck=True` only the runs held stuck (open, with an
    error: their code no longer matches their history, or their history cannot be read), `stuck=False`
    none of them; `kept_copies=False` leaves out the kept copies of retried runs (`<id>/runs/<n>`).
    `where` keeps the runs whose search attributes meet every condition: name -> value (equality) or
    `Range(gte=..., lt=...)` (beluga/core/search.py); checked when the filter is made.
    `after` and `before` are keyset cursors, a listed run's `(created_at, workflow_id)`: the page of runs
    listed after it (older), or the `limit` runs listed just before it (newer), still newest first. A page
    costs the same whichever page it is: no store counts its way past the pages before it."""

    status: WorkflowStatus | None = None
    workflow_type: str | None = None
    limit: int = 100
    id_prefix: str | None = None
    stuck: bool | None = None
    kept_copies: bool = True
    after: tuple[float, str] | None = None
    before: tuple[float, str] | None = None
    where: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.where is not None:
            object.__setattr__(self, "where", check_where(self.where))


@dataclass(frozen=True, slots=True)
class Append:
    """One atomic, conditional append to a run's history: refused unless the run is `run_id` and holds
    exactly `expected_version` events. `status`, `result` and `error` update the run's summary in the
    same write when given (`error={}` clears it: a stuck run whose code matches again);
    `search_attributes`, when given, is the run's whole new set (after an upsert), indexed in that write."""

    workflow_id: str
    run_id: str
    expected_version: int
    events: tuple[Event, ...]
    status: WorkflowStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    updated_at: float = 0.0
    search_attributes: dict[str, Any] | None = None
