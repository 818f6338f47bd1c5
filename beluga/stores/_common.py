"""The rules every store applies the same way, so backends differ only in how they persist.

Pure functions over records; each backend calls them inside its own atomic section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from beluga.core.errors import WorkflowAlreadyStarted
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.core.search import check_attributes, where_holds

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
    if a.search_attributes is not None:
        check_attributes(a.search_attributes)


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
    return a.result is not None or a.error is not None or a.search_attributes is not None


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
    if a.search_attributes is not None:
        changes["search_attributes"] = dict(a.search_attributes)
    return replace(state, **changes) if changes else state


KEPT_COPY = re.compile(r"/runs/\d+$")  # `<id>/runs/<n>`: the copy of a retried run (beluga/cli/runs.py)


def is_kept_copy(workflow_id: str) -> bool:
    return bool(KEPT_COPY.search(workflow_id))


def is_stuck(state: WorkflowState) -> bool:
    """Held stuck: open with an error (its code no longer matches its history, or the history cannot be
    read whole); nothing moves it on until that is fixed."""
    return state.status.is_open and bool(state.error)


def position(state: WorkflowState) -> tuple[float, str]:
    """Where a run is in a listing: the key of `WorkflowFilter.after`/`before` (newest first is descending)."""
    return state.created_at, state.workflow_id


def id_matches(f: WorkflowFilter, workflow_id: str) -> bool:
    """The filter's conditions on the id alone (prefix, kept copies), which stores check before reading a run."""
    return ((not f.id_prefix or workflow_id.startswith(f.id_prefix))
            and (f.kept_copies or not is_kept_copy(workflow_id)))


def in_window(f: WorkflowFilter, at: tuple[float, str]) -> bool:
    """Whether a run at `at` lies past the filter's cursors."""
    return (f.after is None or at < tuple(f.after)) and (f.before is None or at > tuple(f.before))


def matches(f: WorkflowFilter, state: WorkflowState) -> bool:
    """Whether `state` belongs in the listing `f` (its cursors included; not its limit)."""
    return ((f.status is None or state.status == f.status)
            and (f.workflow_type is None or state.workflow_type == f.workflow_type)
            and (f.stuck is None or is_stuck(state) == f.stuck)
            and where_holds(f.where, state.search_attributes)
            and id_matches(f, state.workflow_id) and in_window(f, position(state)))


def page(f: WorkflowFilter, states: Iterable[WorkflowState]) -> list[WorkflowState]:
    """The page of `states` that `f` lists, newest first: the first `limit` past `after`, or, with
    `before`, the `limit` nearest before it. For stores that find runs by reading every summary."""
    found = [s for s in states if matches(f, s)]
    limit = max(f.limit, 0)
    if f.before is not None and f.after is None:
        return sorted(sorted(found, key=position)[:limit], key=position, reverse=True)
    return sorted(found, key=position, reverse=True)[:limit]


def count_by_status(f: WorkflowFilter | str | None, states: Iterable[WorkflowState]) -> dict[str, int]:
    """`WorkflowStore.counts`, from the runs' summaries."""
    f = counting(f)
    out = {status.value: 0 for status in WorkflowStatus}
    for state in states:
        if matches(f, state):
            out[state.status.value] += 1
    return out


def counting(f: WorkflowFilter | str | None) -> WorkflowFilter:
    """The filter `counts` applies: a workflow type alone may be given as a string; its status, limit and
    cursors do not apply (counts are by status, over every page)."""
    if f is None or isinstance(f, str):
        return WorkflowFilter(workflow_type=f)
    return replace(f, status=None, after=None, before=None)


def newest_first(state: WorkflowState) -> tuple[float, str]:
    """Sort key (with reverse=True) matching SQL's `ORDER BY created_at DESC, workflow_id DESC`."""
    return position(state)
