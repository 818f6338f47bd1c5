"""How a run begins, and the payload check every executor applies before anything is stored."""

from __future__ import annotations

import os
import uuid
from typing import Any

from beluga import codec
from beluga.core.errors import SerializationError
from beluga.core.records import Event, EventType, WorkflowState, WorkflowStatus

DEFAULT_MAX_PAYLOAD = 2 * 1024 * 1024


def payload_checker(limit: int) -> Any:
    """Encode once to prove a value can be stored, read back by every process (`codec.check`: no raw
    msgpack ext types, no nesting past `codec.MAX_NESTING`) and is not oversized; raises
    `SerializationError`."""

    def check(value: Any) -> None:
        size = len(codec.check(value))
        if size > limit:
            raise SerializationError(f"payload of {size} bytes exceeds the {limit}-byte limit "
                                     "(max_payload_bytes); store large data elsewhere and pass a reference")

    return check


def new_run_state(workflow_type: str, workflow_id: str, input: Any, timeout: float | None,
                  queue: str | None, now: float, *, parent: dict[str, Any] | None = None,
                  continued_from: str | None = None, headers: dict[str, str] | None = None) -> WorkflowState:
    """A new run with its `workflow_started` event: its seed makes `ctx.random()` replayable; `headers`
    (trace context) travel with the run to its activities."""
    run_id = str(uuid.uuid4())
    attrs: dict[str, Any] = {"workflow_type": workflow_type, "input": input,
                             "seed": int.from_bytes(os.urandom(8), "big") >> 1}
    if timeout is not None:
        attrs["deadline"] = now + timeout
    if queue is not None:
        attrs["queue"] = queue
    if parent is not None:
        attrs["parent"] = parent
    if continued_from is not None:
        attrs["continued_from"] = continued_from
    if headers:
        attrs["headers"] = {str(k): str(v) for k, v in headers.items()}
    started = Event(1, EventType.WORKFLOW_STARTED, now, attrs)
    return WorkflowState(workflow_id, run_id, workflow_type, WorkflowStatus.RUNNING, input, None, None, now,
                         now, (started,), queue, parent)
