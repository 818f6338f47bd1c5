"""How a run begins in every executor: a fresh run id and seed for the core's first state
(`beluga.core.start`), and the payload check every executor applies before anything is stored."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from itertools import count
from typing import TYPE_CHECKING, Any

from beluga import codec
from beluga.core.errors import SerializationError
from beluga.core.records import WorkflowState
from beluga.core.start import first_state

if TYPE_CHECKING:
    from beluga.stores.base import WorkflowStore

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
                  continued_from: str | None = None, headers: dict[str, str] | None = None,
                  identity: str | None = None, search_attributes: dict[str, Any] | None = None,
                  memo: Any = None, priority: int | None = None) -> WorkflowState:
    """The core's first state of a new run (`first_state`), under a random run id and seed."""
    return first_state(workflow_type, workflow_id, input, timeout, queue, now, run_id=str(uuid.uuid4()),
                       seed=int.from_bytes(os.urandom(8), "big") >> 1, parent=parent,
                       continued_from=continued_from, headers=headers, identity=identity,
                       search_attributes=search_attributes, memo=memo, priority=priority)


def archive_id(workflow_id: str, n: int) -> str:
    """Where the n-th earlier run of `workflow_id` is kept (`<id>/runs/<n>`), by `retry` and `reset`."""
    return f"{workflow_id}/runs/{n}"


def archive(store: WorkflowStore, state: WorkflowState) -> str:
    """Copy the closed run `state` to the next free `<id>/runs/<n>` (or find the copy made by an earlier,
    interrupted retry or reset of the same run); returns the id of the copy."""
    for n in count(1):
        key = archive_id(state.workflow_id, n)
        existing = store.load_summary(key)
        if existing is None:
            store.save(replace(state, workflow_id=key))
            return key
        if existing.run_id == state.run_id:
            return key
    raise AssertionError("unreachable")
