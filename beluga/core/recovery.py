"""What a reloaded run is owed, read from its history alone: after a crash, any process that picks a run
up must re-arm its deadline, timers and retries, fail the attempts that were running in the process that
died, look after its children and finish a continue-as-new it recorded; and what a step would owe should
its process stop right after recording it. Computed here once, as typed obligations; each executor carries
them out with its own I/O (the in-process engine after a restart; the fleet arms durable backups for a
step's, and finishes a continue-as-new its history ends with)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beluga.core.failure import process_lost
from beluga.core.pending import Pending, pending_work
from beluga.core.records import Event, EventType, ParentClosePolicy, WorkflowState
from beluga.core.steps import (
    CancelRequested,
    ChildToClose,
    CloseChildren,
    ContinueAsNew,
    Effect,
    Input,
    RunClosed,
    StartChild,
    Terminate,
)


@dataclass(frozen=True, slots=True)
class ArmDeadline:
    """The run's own deadline (`WorkflowOptions.timeout`): send `TimedOut` at `due`."""

    due: float


@dataclass(frozen=True, slots=True)
class TakeStep:
    """The run owes a step now: its first one, one it was stuck in under earlier code, or the close it
    recorded (a continue-as-new to finish, see `continuation_owed`)."""


@dataclass(frozen=True, slots=True)
class RearmTimer:
    """A durable timer still running: send `TimerFired(seq)` at `due`."""

    seq: int
    due: float


@dataclass(frozen=True, slots=True)
class RetryDue:
    """A retry's backoff still running: send `AttemptDue(seq, attempt)` at `due`."""

    seq: int
    attempt: int
    due: float


@dataclass(frozen=True, slots=True)
class AttemptInterrupted:
    """Attempt `attempt` of activity `seq` had begun in the process that stopped: it failed (`failure`),
    and the run's retry policy decides what follows (an undecided `ActivityOutcome`)."""

    seq: int
    attempt: int
    failure: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChildToCheck:
    """A child the run still waits for: make sure it exists, and pass on its end should it be closed."""

    seq: int
    child: dict[str, Any]  # the child_workflow_started attributes


@dataclass(frozen=True, slots=True)
class ContinuationOwed:
    """The run recorded its continue-as-new but the next run was never created: create it with `input`."""

    input: Any


@dataclass(frozen=True, slots=True)
class ParentToNotify:
    """The closed child run owes its parent the news of its end."""


@dataclass(frozen=True, slots=True)
class ChildrenToClose:
    """The closed run owes its open children their parent-close policy (`CloseChildren`)."""

    close: CloseChildren


Obligation = (ArmDeadline | TakeStep | RearmTimer | RetryDue | AttemptInterrupted | ChildToCheck | ContinuationOwed
              | ParentToNotify | ChildrenToClose)


def owed(state: WorkflowState, work: Pending | None = None) -> list[Obligation]:
    """What the open run `state` (its history whole) is owed by the process that loads it after a restart,
    in the order to carry it out. `work`: its `pending_work`, when the caller has it already."""
    history = state.history
    work = pending_work(history) if work is None else work
    out: list[Obligation] = []
    if work.deadline is not None:
        out.append(ArmDeadline(work.deadline))
    # a run's first step, a stuck run's, a close to finish, or the inputs a reset left owed (core/reset.py)
    if len(history) == 1 or work.closed or state.error is not None or history[-1].attrs.get("deferred"):
        out.append(TakeStep())
        if work.closed:
            return out
    out.extend(RearmTimer(seq, due) for seq, due in work.timers.items())
    for seq, act in work.activities.items():
        if act.started:
            out.append(AttemptInterrupted(seq, act.attempt, process_lost(act.attempt)))
        else:
            out.append(RetryDue(seq, act.attempt, act.not_before))
    out.extend(ChildToCheck(seq, child) for seq, child in work.children.items())
    return out


def backups_owed(effects: Sequence[Effect], has_parent: bool) -> list[Obligation]:
    """What a step's effects would owe the run should the process carrying them out stop right after the
    step was recorded: the child it starts, the next run of its continue-as-new, the news to its parent
    when it closed. An executor whose processes can stop one by one (the fleet) arms a durable backup for
    each, so that another process carries it out (each is harmless when it was done already)."""
    out: list[Obligation] = []
    for effect in effects:
        if isinstance(effect, StartChild):
            out.append(ChildToCheck(effect.seq, {"seq": effect.seq, "workflow_type": effect.workflow_type,
                                                 "workflow_id": effect.workflow_id}))
        elif isinstance(effect, ContinueAsNew):
            out.append(ContinuationOwed(effect.input))
        elif isinstance(effect, RunClosed) and has_parent:
            out.append(ParentToNotify())
        elif isinstance(effect, CloseChildren):
            out.append(ChildrenToClose(effect))
    return out


def policy_input(child: ChildToClose, reason: str) -> Input:
    """What a child's parent-close policy sends it: a terminate naming the parent, or a cancel request."""
    if child.policy == ParentClosePolicy.REQUEST_CANCEL.value:
        return CancelRequested()
    return Terminate(reason)


def orphan_owed(child: WorkflowState, parent: WorkflowState | None) -> CloseChildren | None:
    """An open child run whose parent's run is closed, though its policy may never have been applied (the
    process that closed the parent stopped first): what it is owed, read from the parent's history. None
    while the parent's run is open, and when the parent's run is gone from the store (replaced by its
    next run or a retry: its history, and the policy with it, are not there to read)."""
    link = child.parent
    if not link or parent is None or parent.run_id != link.get("run_id") or parent.status.is_open:
        return None
    for ev in parent.history:
        if ev.type == EventType.CHILD_WORKFLOW_STARTED and ev.attrs.get("seq") == link.get("seq"):
            policy = ev.attrs.get("parent_close_policy") or ParentClosePolicy.ABANDON.value
            if policy == ParentClosePolicy.ABANDON.value or ev.attrs.get("workflow_id") != child.workflow_id:
                return None
            return CloseChildren(parent.run_id, f"parent workflow {parent.workflow_id} {parent.status.value}",
                                 (ChildToClose(int(link["seq"]), child.workflow_id, policy),))
    return None


def continuation_owed(closed: bool, last: Event | None) -> ContinuationOwed | None:
    """A run whose history is closed (`closed`, see `Pending.closed`) while its summary is still open owes
    the next run when the `last` event of its history is its continue-as-new: the process that was to
    create that run stopped after recording it. None when it owes none."""
    if closed and last is not None and last.type == EventType.WORKFLOW_CONTINUED_AS_NEW:
        return ContinuationOwed(last.attrs.get("input"))
    return None
