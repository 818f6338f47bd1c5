"""The rules every store applies the same way, so backends differ only in how they persist.

Pure functions over records; each backend calls them inside its own atomic section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from beluga.core.errors import WorkflowAlreadyStarted
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus

DEFAULT_FILTER = WorkflowFilter()


def check_events(events: Sequence[Event], after: int, workflow_id: str) -> None:
    """Event ids are positions, so they must continue the history exactly. A gap or overlap is a bug
    in the caller, raised before anything is written rather than stored as a corrupt history."""
    for expected, ev in enumerate(events, start=after + 1):
        if ev.id != expected:
            raise ValueError(f"event ids for workflow {workflow_id!r} must run {after + 1}, {after + 2}, ... "
                             f"without gaps; got id {ev.id} where {expected} was due")


def check_append(a: Append) -> None:
    check_events(a.events, a.expected_version, a.workflow_id)


def accepts(run_id: str, version: int, a: Append) -> bool:
    """Optimistic concurrency: the writer must have read this very run at this very version."""
    return run_id == a.run_id and version == a.expected_version


def check_create(workflow_id: str, current_run_id: str | None, current_status: WorkflowStatus | str | None,
                 replace_run_id: str | None) -> None:
    """Refuse a second open run for one id, except the continue-as-new of that very run."""
    if current_run_id is None or not WorkflowStatus(current_status).is_open:
        return
    if replace_run_id is not None and replace_run_id == current_run_id:
        return
    raise WorkflowAlreadyStarted(
        f"workflow {workflow_id!r} already has an open run {current_run_id!r}; wait for it to finish, "
        "cancel it, or start the new run under another workflow id")


def needs_summary(a: Append) -> bool:
    """Whether the append changes summary fields beyond status and updated_at (which stores may keep
    in columns of their own and update without rewriting the summary)."""
    return a.result is not None or a.error is not None


def summarize(state: WorkflowState, a: Append) -> WorkflowState:
    """The summary after `a`. `None`/0.0 fields of an Append mean "unchanged", so a run's result is
    set once, by the append that completes it; `error={}` clears the error."""
    changes: dict[str, Any] = {}
    if a.status is not None:
        changes["status"] = WorkflowStatus(a.status)
    if a.result is not None:
        changes["result"] = a.result
    if a.error is not None:
        changes["error"] = a.error or None  # an empty dict clears the error of a run that was stuck
    if a.updated_at:
        changes["updated_at"] = a.updated_at
    return replace(state, **changes) if changes else state


def matches(f: WorkflowFilter, state: WorkflowState) -> bool:
    return ((f.status is None or state.status == f.status)
            and (f.workflow_type is None or state.workflow_type == f.workflow_type))


def newest_first(state: WorkflowState) -> tuple[float, str]:
    """Sort key (with reverse=True) matching SQL's `ORDER BY created_at DESC, workflow_id DESC`."""
    return state.created_at, state.workflow_id
