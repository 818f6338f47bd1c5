"""How a run begins: its first state, with the `workflow_started` event every executor records.

Pure: the run's id and seed are drawn by the caller (`beluga.runs.new_run_state` draws them), as the core
reads no clock and makes no random ids."""

from __future__ import annotations

from typing import Any

from beluga.core.priority import check_priority
from beluga.core.records import Event, EventType, WorkflowState, WorkflowStatus


def first_state(workflow_type: str, workflow_id: str, input: Any, timeout: float | None, queue: str | None,
                now: float, *, run_id: str, seed: int, parent: dict[str, Any] | None = None,
                continued_from: str | None = None, headers: dict[str, str] | None = None,
                identity: str | None = None, search_attributes: dict[str, Any] | None = None,
                memo: Any = None, priority: int | None = None) -> WorkflowState:
    """A new run with its `workflow_started` event: its `seed` makes `ctx.random()` replayable; `headers`
    (trace context) travel with the run to its activities; `identity` names who started it;
    `search_attributes` (checked by the caller: beluga/core/search.py) and `memo` are recorded with the
    start and kept in the run's summary, where stores index the attributes; `priority` (1 highest to 5
    lowest, see core/priority.py) is its activities' where a call sets none."""
    attrs: dict[str, Any] = {"workflow_type": workflow_type, "input": input, "seed": seed}
    if timeout is not None:
        attrs["deadline"] = now + timeout
    if queue is not None:
        attrs["queue"] = queue
    if parent is not None:
        attrs["parent"] = parent
    if continued_from is not None:
        attrs["continued_from"] = continued_from
    if identity is not None:
        attrs["identity"] = identity
    if check_priority(priority, "a run's priority") is not None:
        attrs["priority"] = priority
    if headers:
        attrs["headers"] = {str(k): str(v) for k, v in headers.items()}
    if search_attributes:
        attrs["search_attributes"] = dict(search_attributes)
    if memo is not None:
        attrs["memo"] = memo
    started = Event(1, EventType.WORKFLOW_STARTED, now, attrs)
    return WorkflowState(workflow_id, run_id, workflow_type, WorkflowStatus.RUNNING, input, None, None, now,
                         now, (started,), queue, parent, dict(search_attributes or {}), memo)
