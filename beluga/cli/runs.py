"""What the command (and the web console) knows about runs beyond their summaries: listing them, what a
run waits on now, and where its earlier runs are kept when it was retried; the operations on one run
that both tools offer (`open_run`, `retry_run`).

Retrying a run starts a new run under the same id, which replaces the old one in the store (a store holds
one current run per id). Before that, `archive` copies the old run whole — summary and history — to the
id `<id>/runs/<n>` (n = 1, 2, ... in the order runs were retried), in the same store: `beluga show`,
`export` and `replay` reach it like any run, `beluga show <id>` lists it, and `beluga list` hides such
copies unless asked (`--all`). Nothing drives a copy: it is closed, and signals to it are refused.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import count
from typing import TYPE_CHECKING, Any

from beluga.cli.errors import EXIT_USAGE, CLIError
from beluga.core import driver as drv
from beluga.core.definitions import registry
from beluga.core.inspection import CodeState, code_state
from beluga.core.pending import Pending, pending_work
from beluga.core.records import WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.core.search import InvalidSearchAttribute, parse_where
from beluga.runs import archive, archive_id
from beluga.stores._common import is_kept_copy, is_stuck, matches, position
from beluga.stores.base import WorkflowStore

if TYPE_CHECKING:
    from beluga.cli.target import Target
    from beluga.executors.base import WorkflowHandle

def is_archive(workflow_id: str) -> bool:
    return is_kept_copy(workflow_id)


def earlier_runs(store: WorkflowStore, workflow_id: str) -> list[WorkflowState]:
    """The archived earlier runs of `workflow_id`, oldest first (summaries)."""
    out = []
    for n in count(1):
        state = store.load_summary(archive_id(workflow_id, n))
        if state is None:
            return out
        out.append(state)


# --- what a run waits on -----------------------------------------------------------------------------
@dataclass
class RunWaits:
    activities: list[dict[str, Any]] = field(default_factory=list)
    timers: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    deadline: float | None = None
    code: CodeState | None = None     # None: the workflow's code is not available in this process
    code_error: str | None = None     # the code is here but cannot replay the run


def waiting(state: WorkflowState, *, check_payload: Any = lambda v: None, untaken: Any = None) -> RunWaits:
    """What an open run waits for: from its history alone (activities, timers, children, its deadline),
    and, when its code is registered in this process, from a read-only replay (the signals it is parked
    on, signals received but not yet read, its query handlers). Nothing is run or recorded. `untaken`
    (a fleet's: `Target.untaken`) tells the dispatched attempts that no worker has taken yet apart from
    those running, and whether a live worker consumes the queue they wait in."""
    work: Pending = pending_work(state.history)
    now = time.time()
    out = RunWaits(deadline=work.deadline)
    dispatched = [(a.seq, a.attempt) for a in work.activities.values() if a.started]
    queued = untaken(state.workflow_id, dispatched) if untaken is not None and dispatched else {}
    for act in sorted(work.activities.values(), key=lambda a: a.seq):
        if (act.seq, act.attempt) in queued and act.started:
            queue, consumed = queued[act.seq, act.attempt]
            phase = (f"queued on {queue!r}, not yet taken by a worker" if consumed
                     else f"waiting for a worker on queue {queue!r} (no live worker consumes it)")
        elif act.started:
            phase = "running"
        elif act.limit is not None:
            phase = f"waiting for its {act.limit_why} limit {act.limit!r} (not a failure)"
        elif act.not_before > now:
            phase = "backing off"
        else:
            phase = "to dispatch"
        out.activities.append({"seq": act.seq, "name": act.name, "attempt": act.attempt, "state": phase,
                               "not_before": act.not_before if phase == "backing off" or act.limit else None})
    out.timers = [{"seq": seq, "fire_at": fire_at} for seq, fire_at in sorted(work.timers.items())]
    out.children = [{"seq": seq, "workflow_type": c.get("workflow_type"), "workflow_id": c.get("workflow_id")}
                    for seq, c in sorted(work.children.items())]
    if state.workflow_type in registry.workflows:
        try:
            instance = drv.read_only(state, registry.workflow, check_payload=check_payload)
        except Exception as exc:  # a mismatch, or code that fails on this history
            out.code_error = f"{exc.__class__.__name__}: {exc}"
        else:
            try:
                out.code = code_state(instance)
            finally:
                instance.close()
    return out


# --- listing and operations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunQuery:
    """What the console and `beluga list` ask for: `id_prefix` (ids that start with it) or `workflow_id`
    (that one run); `stuck` only the runs held stuck; kept copies of retried runs only with `archives`;
    `where` the runs whose search attributes meet its conditions."""

    status: WorkflowStatus | None = None
    workflow_type: str | None = None
    id_prefix: str | None = None
    workflow_id: str | None = None
    stuck: bool = False
    archives: bool = False
    where: dict[str, Any] | None = None  # search attributes: beluga/core/search.py (`parse_where` reads the CLI's)

    def filter(self, limit: int) -> WorkflowFilter:
        return WorkflowFilter(status=self.status, workflow_type=self.workflow_type, limit=limit,
                              id_prefix=self.id_prefix or None, stuck=True if self.stuck else None,
                              kept_copies=self.archives, where=self.where or None)


@dataclass(frozen=True)
class RunsPage:
    """One page of runs, newest first, and the opaque cursors of the pages beside it (None: no such page)."""

    runs: list[WorkflowState]
    newer: str | None = None   # the page before (newer runs)
    older: str | None = None   # the page after (older runs)


def where_of(conditions: list[str] | None) -> dict[str, Any] | None:
    """`--where` conditions (the console's search box: the same, space-separated) as a filter's `where`."""
    if not conditions:
        return None
    try:
        return parse_where(conditions) or None
    except InvalidSearchAttribute as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None


def attributes_line(attrs: dict[str, Any] | None) -> str:
    """`customer=c-42, amount=12.5, due=2026-05-01T09:00:00+00:00`: a run's search attributes on one line."""
    return ", ".join(f"{k}={v.isoformat() if isinstance(v, datetime) else v}" for k, v in sorted((attrs or {}).items()))


def encode_cursor(direction: str, state: WorkflowState) -> str:
    """An opaque cursor: the runs `direction` ("older", "newer") of `state`'s place in the listing."""
    raw = json.dumps([direction, repr(state.created_at), state.workflow_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, tuple[float, str]]:
    try:
        direction, created, workflow_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if direction not in ("older", "newer") or not isinstance(workflow_id, str):
            raise ValueError(direction)
        return direction, (float(created), workflow_id)
    except (ValueError, TypeError, binascii.Error):
        raise CLIError(f"the cursor {text[:40]!r} is not one this listing gave", EXIT_USAGE) from None


def list_page(store: WorkflowStore, query: RunQuery, *, limit: int = 50, cursor: str | None = None,
              since: float | None = None) -> RunsPage:
    """A page of at most `limit` runs from `cursor` on (the first page without one), with the cursors of
    the pages beside it. Each is a keyset query of the store (`WorkflowFilter.after`/`before`): any page
    costs about the first's. `since`: only runs started at or after then (the pages end there)."""
    limit = max(limit, 1)
    if query.workflow_id:  # that one run, a kept copy too
        state = store.load(query.workflow_id)
        return RunsPage([state] if state is not None and matches(replace(query, archives=True).filter(1), state)
                        else [])
    f = query.filter(limit + 1)
    direction, at = decode_cursor(cursor) if cursor else ("older", None)
    if direction == "newer" and at is not None:
        got = store.list(replace(f, before=at))
        if len(got) > limit:
            runs = got[-limit:]
            return _cut(RunsPage(runs, encode_cursor("newer", runs[0]), encode_cursor("older", runs[-1])), since)
        at = None  # near the top: the first page, whole
    got = store.list(replace(f, after=at))
    runs = got[:limit]
    newer = None
    if at is not None and not runs:  # past the end: back to the runs before the cursor
        newer = encode_cursor("newer", WorkflowState(at[1], "", "", created_at=at[0]))
    elif at is not None and store.list(replace(f, limit=1, before=position(runs[0]))):
        newer = encode_cursor("newer", runs[0])
    return _cut(RunsPage(runs, newer, encode_cursor("older", runs[-1]) if len(got) > limit else None), since)


def _cut(page: RunsPage, since: float | None) -> RunsPage:
    if since is None or all(s.created_at >= since for s in page.runs):
        return page
    return RunsPage([s for s in page.runs if s.created_at >= since], page.newer, None)


def count_runs(store: WorkflowStore, query: RunQuery) -> dict[str, int]:
    """How many runs each status tab holds, over all its pages, under the query's type, id and kept-copies
    conditions; and "stuck": the runs held stuck (a part of "running")."""
    if query.workflow_id:
        state = store.load_summary(query.workflow_id)
        base = replace(query, stuck=False, status=None, archives=True)
        found = [state] if state is not None and matches(base.filter(1), state) else []
        out = {s.value: sum(r.status is s for r in found) for s in WorkflowStatus}
        return {**out, "stuck": sum(is_stuck(r) for r in found)}
    f = replace(query, stuck=False, status=None).filter(1)
    return {**store.counts(f), "stuck": store.counts(replace(f, stuck=True))[WorkflowStatus.RUNNING.value]}


def open_run(target: Target, workflow_id: str, what: str) -> WorkflowState:
    """The summary of an open run, or a `CLIError` saying why `what` cannot be done to it."""
    state = target.store.load_summary(workflow_id)
    if state is None:
        raise CLIError(f"no workflow with id {workflow_id!r} in {target.url}")
    if not state.status.is_open:
        raise CLIError(f"cannot {what} {workflow_id}: it is {state.status.value}")
    return state


RETRYABLE = (WorkflowStatus.FAILED, WorkflowStatus.TIMED_OUT, WorkflowStatus.CANCELED)


@dataclass
class Retried:
    handle: WorkflowHandle
    kept: str                  # the id the old run is kept under
    previous: WorkflowState


def operator() -> str:
    """Who the `beluga` command acts as: `user@host` (recorded with its signals, cancels, terminations
    and retries, and logged)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's bare uid)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def retry_run(target: Target, workflow_id: str, identity: str | None = None) -> Retried:
    """Start a failed, timed-out or canceled run again from the start, under the same id with the same
    input (and timeout, queue, and the search attributes and memo it was started with), after keeping the
    old run as `<id>/runs/<n>`. `identity`: who retries it, recorded in the new run's `workflow_started`
    event and logged."""
    from beluga.executors.base import WorkflowOptions, log_write

    state = target.load(workflow_id)
    if state.status not in RETRYABLE:
        hint = ("cancel or terminate it first" if state.status.is_open
                else "start a new run with `beluga start`")
        raise CLIError(f"cannot retry {workflow_id}: it is {state.status.value}; only a failed, timed-out "
                       f"or canceled run starts again ({hint})")
    if is_archive(state.workflow_id):
        raise CLIError(f"{state.workflow_id} is a kept copy of an earlier run; retry "
                       f"{state.workflow_id.rsplit('/runs/', 1)[0]} instead")
    target.need_code(state.workflow_type, "retry")
    started = state.history[0].attrs if state.history else {}
    timeout = (started["deadline"] - state.history[0].timestamp) if started.get("deadline") is not None else None
    kept = archive(target.store, state)
    handle = target.executor().execute(state.workflow_type, WorkflowOptions(
        id=state.workflow_id, input=state.input, timeout=timeout, queue=state.queue, identity=identity,
        search_attributes=started.get("search_attributes") or None, memo=started.get("memo")))
    log_write("retried", state.workflow_id, identity, f"new run {handle.run_id}, the old one kept as {kept}")
    return Retried(handle, kept, state)
