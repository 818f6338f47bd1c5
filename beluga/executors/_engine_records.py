"""The in-process engine's records: inbox messages, and what it keeps per run and per batch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future as Reply
from dataclasses import dataclass, field
from typing import Any

from beluga.core.driver import RunDriver
from beluga.core.instance import WorkflowInstance
from beluga.core.records import WorkflowState, WorkflowStatus
from beluga.core.steps import Input, Step


@dataclass(slots=True)
class Msg:
    """One item of the coordinator's inbox: a run input (`kind="input"`, `payload` an `Input`) or an
    engine-internal request (start, recover, query, activate, child_check, attempt_timeout, activity)."""

    kind: str
    workflow_id: str
    run_id: str | None = None
    seq: int = 0
    attempt: int = 0
    payload: Any = None
    ok: bool = True
    reply: Reply[Any] | None = None


def input_msg(workflow_id: str, run_id: str | None, input: Input, reply: Reply[Any] | None = None) -> Msg:
    return Msg("input", workflow_id, run_id, payload=input, reply=reply)


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
class Pending:
    """What one batch will write for one run, and what to do once it is durable."""

    run: Run
    step: Step
    msgs: list[Msg] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
