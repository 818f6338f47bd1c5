"""What reaches a run and what a run asks of its executor, as frozen records.

Inputs are what an executor hands to `RunDriver.apply` (a signal, an activity's outcome, a timer that
fired, ...); effects are what the driver hands back, to be carried out once the step's events are
durable (send an activity attempt, arm a timer, start a child, announce the close, ...). Executors
translate their own messages into inputs and effects into their own I/O; nothing here knows how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beluga.core.records import Event, WorkflowStatus
from beluga.core.retry import RetryDecision


# --- inputs ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignalReceived:
    name: str
    payload: Any = None
    sender_id: str | None = None
    identity: str | None = None   # who sent it (an operator, `user@host`), recorded with the event


@dataclass(frozen=True, slots=True)
class UpdateRequested:
    """An update its validator accepted: recorded once per `update_id` (a retry with the same id is a
    duplicate), then its handler runs."""

    update_id: str
    name: str
    args: tuple[Any, ...] = ()
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRequested:
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    seq: int


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The run's own deadline (`WorkflowOptions.timeout`) passed."""


@dataclass(frozen=True, slots=True)
class ChildClosed:
    seq: int
    ok: bool
    payload: Any = None  # the child's result, or its failure record


@dataclass(frozen=True, slots=True)
class ActivityOutcome:
    """An attempt ended. `decision` is the sender's retry decision (`core.retry.decide_retry`) when it made
    one (the worker that ran the attempt has the activity's code); None lets the driver decide from the
    policy (the attempt was lost with its worker). `Retry(delay, by_sender=True)`: the sender already
    scheduled the next attempt itself (a Celery retry), so the driver only records it. `final`: the
    sender ran every attempt itself, retries included (Temporal's server retries by the mapped policy), and reports only
    the activity's last outcome, numbered by the attempt that gave it: recorded as it is, whichever
    attempt the run last saw begin, and never retried."""

    seq: int
    attempt: int
    ok: bool
    payload: Any = None
    decision: RetryDecision | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class Terminate:
    """Close the run at once, canceled with `reason`; no workflow code runs (it may have none)."""

    reason: str = ""
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptDue:
    """A retry's backoff ran out: begin attempt `attempt` of activity `seq` if it is still the next one."""

    seq: int
    attempt: int


Input = (SignalReceived | UpdateRequested | CancelRequested | TimerFired | TimedOut | ChildClosed | ActivityOutcome
         | AttemptDue | Terminate)


# --- effects -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DispatchAttempt:
    seq: int
    attempt: int
    name: str
    input: Any
    options: dict[str, Any]
    start_at: float | None = None  # the start its rate limit reserved, when later than now (core/limits.py)


@dataclass(frozen=True, slots=True)
class ArmTimer:
    seq: int
    due: float


@dataclass(frozen=True, slots=True)
class ArmRetry:
    """Begin `attempt` of activity `seq` at `due` (send `AttemptDue` back then)."""

    seq: int
    attempt: int
    due: float
    failure: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AwaitPermit:
    """Attempt `attempt` of activity `seq` got no permit of limit `key` (`why`: "rate" or "concurrency"):
    send `AttemptDue` back at `due`, or sooner when a permit of `key` is returned. Not a failure."""

    seq: int
    attempt: int
    due: float
    key: str
    why: str


@dataclass(frozen=True, slots=True)
class ReturnPermit:
    """Attempt `attempt` of activity `name` (called with `input`) ended: return the concurrency permit it
    held, if its activity has one, and wake an attempt that waits for it."""

    seq: int
    attempt: int
    name: str
    input: Any


@dataclass(frozen=True, slots=True)
class StartChild:
    seq: int
    workflow_type: str
    workflow_id: str
    input: Any
    parent_close_policy: str = "terminate"


@dataclass(frozen=True, slots=True)
class ChildToClose:
    """An open child of a run that closed, and what its parent-close policy asks of it."""

    seq: int
    workflow_id: str
    policy: str  # "terminate" or "request_cancel" (an abandoned child is never listed)


@dataclass(frozen=True, slots=True)
class CloseChildren:
    """The run closed (or continued as new) with children still open: terminate or cancel each as its
    parent-close policy says. Each is harmless when done twice (a closed child refuses it, a second cancel
    records nothing), so an executor may repeat it from a durable backup."""

    parent_run_id: str
    reason: str  # what the children's terminations say: "parent workflow <id> <how it closed>"
    children: tuple[ChildToClose, ...]


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    input: Any


@dataclass(frozen=True, slots=True)
class RunClosed:
    status: WorkflowStatus
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UpdateCompleted:
    """Update `update_id`'s handler ended (recorded in this step): `ok` with its result, or its failure
    record. Executors hand it to the caller waiting on it."""

    update_id: str
    ok: bool
    payload: Any = None


@dataclass(frozen=True, slots=True)
class ActivityClosed:
    """Activity `name` (called with `options`) got its outcome for good (completed, or failed with no
    attempt to follow), `seconds` after it was scheduled: its schedule-to-close latency, for metrics."""

    name: str
    options: dict[str, Any]
    seconds: float


@dataclass(frozen=True, slots=True)
class Observed:
    """Something hooks may want to see (`on_signal`, `on_activity_complete`), in the order it happened."""

    hook: str
    payload: Any


Effect = (DispatchAttempt | ArmTimer | ArmRetry | StartChild | ContinueAsNew | RunClosed | CloseChildren | Observed
          | ActivityClosed | UpdateCompleted | AwaitPermit | ReturnPermit)


@dataclass(slots=True)
class Step:
    """What one step writes for one run, in one conditional append, and what is due once it is durable.

    `status`/`result`/`error` update the run's summary in the same write (`error={}` clears a stuck
    run's reason); `search_attributes`, when set, the run's whole new set of search attributes (an upsert)."""

    expected: int
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    status: WorkflowStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    closing: int | None = None  # index in `events` of the input that closed the run, while signals may follow
    late: int = 0               # signals recorded after the closing input, before its commands
    search_attributes: dict[str, Any] | None = None

    @property
    def writes(self) -> bool:
        return bool(self.events) or self.status is not None or self.error is not None
