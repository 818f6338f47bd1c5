"""The in-process engine's records: inbox messages, and what it keeps per run and per batch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as Reply
from dataclasses import dataclass, field
from typing import Any

from beluga.core.instance import WorkflowInstance
from beluga.core.records import Event, WorkflowState, WorkflowStatus
from beluga.core.retry import RetryPolicy


@dataclass(slots=True)
class Msg:
    kind: str
    workflow_id: str
    run_id: str | None = None
    seq: int = 0
    attempt: int = 0
    payload: Any = None
    ok: bool = True
    reply: Reply[Any] | None = None
    force: bool = False


@dataclass(slots=True)
class Task:
    """An activity of a live run: what to call and with which policy."""

    name: str
    input: Any
    retry: RetryPolicy
    timeout: float | None
    heartbeat_timeout: float | None
    attempt: int = 0
    running: bool = False
    details: Any = None


@dataclass(slots=True)
class Run:
    state: WorkflowState            # summary as created; history not kept here
    instance: WorkflowInstance | None  # None: stuck (code does not match history) or closed
    version: int
    status: WorkflowStatus = WorkflowStatus.RUNNING
    tasks: dict[int, Task] = field(default_factory=dict)

    @property
    def workflow_id(self) -> str:
        return self.state.workflow_id

    @property
    def run_id(self) -> str:
        return self.state.run_id


@dataclass(slots=True)
class Pending:
    """What one batch will write for one run, and what to do once it is durable."""

    run: Run
    expected: int
    events: list[Event] = field(default_factory=list)
    msgs: list[Msg] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    status: WorkflowStatus | None = None
    result: Any = None
    error: dict[str, Any] | None = None
