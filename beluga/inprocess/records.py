"""The in-process engine's records: inbox messages, and what it keeps per run and per batch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as Reply
from dataclasses import dataclass, field
from typing import Any

from beluga.core.driver import RunDriver
from beluga.core.instance import WorkflowInstance
from beluga.core.records import WorkflowState, WorkflowStatus
from beluga.core.steps import Input, SignalReceived, Step


# --- what the coordinator's inbox carries besides run inputs ----------------------------------------------
@dataclass(frozen=True, slots=True)
class StartRun:
    """A run was created: load it (its first activation happens then)."""

    state: WorkflowState


@dataclass(frozen=True, slots=True)
class SignalWithStart:
    """`signal_with_start`: create the run `state` unless its id has one open, then apply `signal` to the
    open run, in one coordinator step (so callers racing on one id make one run)."""

    state: WorkflowState
    signal: SignalReceived


@dataclass(frozen=True, slots=True)
class Recover:
    """Resume every open run in the store (`InProcessExecutor.recover`)."""


@dataclass(frozen=True, slots=True)
class Activate:
    """Load the run: it owes its first step, or was stuck under earlier code."""


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """`executor.update`: validate on the live run, then record it (see `Engine._update`)."""

    update_id: str
    name: str
    args: tuple[Any, ...]
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class CheckChild:
    """After a restart: make sure the child recorded at `seq` exists, or learn that it closed."""

    seq: int
    child: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParentClosed:
    """The parent `link` closed: apply `input` (its parent-close policy) if the run is still that
    parent's child (an id reused since by another run is left alone)."""

    link: dict[str, Any]
    input: Input


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """An attempt's outcome, from the activity pool."""

    seq: int
    attempt: int
    ok: bool
    payload: Any


@dataclass(frozen=True, slots=True)
class AttemptDeadline:
    """An attempt's timeout or heartbeat timeout came due."""

    seq: int
    attempt: int
    heartbeat: bool


@dataclass(frozen=True, slots=True)
class SubmitLater:
    """An attempt whose start its rate limit reserved for later: handed to the pool when due (`job`:
    what `ActivityPool.submit` takes)."""

    job: tuple[Any, ...]
    priority: int = 3  # core/priority.py DEFAULT


@dataclass(frozen=True, slots=True)
class Nudge:
    """Nothing to do: wakes the coordinator (and answers once everything posted before it was handled)."""


Control = (StartRun | SignalWithStart | Recover | Activate | Query | Update | CheckChild | ParentClosed
           | AttemptFinished | AttemptDeadline | Nudge | SubmitLater)


@dataclass(slots=True)
class Msg:
    """One item of the coordinator's inbox: a run input (`beluga.core.steps`) or one of the records
    above, for the run `workflow_id` (and `run_id`, when it is for that run only)."""

    workflow_id: str
    run_id: str | None
    body: Input | Control
    reply: Reply[Any] | None = None


def input_msg(workflow_id: str, run_id: str | None, input: Input, reply: Reply[Any] | None = None) -> Msg:
    return Msg(workflow_id, run_id, input, reply)


@dataclass(slots=True)
class Run:
    """A run in the engine's memory: open runs have a driver; closed ones only what queries need."""

    state: WorkflowState                  # summary; the history lives in the store
    driver: RunDriver | None = None
    reader: WorkflowInstance | None = None  # a closed run replayed read-only for its query handlers
    details: dict[int, Any] = field(default_factory=dict)  # seq -> last heartbeat details

    @property
    def workflow_id(self) -> str:
        return self.state.workflow_id

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def status(self) -> WorkflowStatus:
        return self.driver.state.status if self.driver is not None else self.state.status


@dataclass(slots=True)
class BatchedStep:
    """What one batch will write for one run, and what to do once it is durable."""

    run: Run
    step: Step
    msgs: list[Msg] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
