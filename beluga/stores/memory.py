"""The in-process store: the real double the tests and the in-process executor run on.

Everything that enters or leaves passes through the codec, which both copies it (callers cannot mutate
stored state, nor the store theirs) and holds this store to what a persistent one can keep: a value
the SQLite store could not encode fails here too, and comes back in the same shape.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from dataclasses import replace

from beluga.codec import decode, decode_event, decode_state, encode, encode_event, encode_state
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState
from beluga.stores._common import (
    DEFAULT_FILTER,
    accepts,
    check_append,
    check_create,
    check_events,
    count_by_status,
    needs_summary,
    page,
    summarize,
)
from beluga.stores.base import WorkflowStore
from beluga.stores.schedule_store import MemorySchedules, ScheduleStore


def _copy_event(ev: Event) -> Event:
    return decode_event(encode_event(ev))


def _copy_summary(state: WorkflowState) -> WorkflowState:
    return decode_state(encode_state(state))


class InMemoryStore(WorkflowStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, WorkflowState] = {}  # summaries, history=()
        self._events: dict[str, list[Event]] = {}
        self._schedules = MemorySchedules()

    def schedules(self) -> ScheduleStore:
        return self._schedules

    def _own(self, state: WorkflowState) -> tuple[WorkflowState, list[Event]]:
        check_events(state.history, 0, state.workflow_id)
        return _copy_summary(state), [_copy_event(ev) for ev in state.history]

    def _state(self, workflow_id: str) -> WorkflowState:
        # Called under the lock; the copies are what callers receive.
        return replace(_copy_summary(self._runs[workflow_id]),
                       history=tuple(_copy_event(ev) for ev in self._events[workflow_id]))

    def save(self, state: WorkflowState) -> None:
        summary, events = self._own(state)
        with self._lock:
            self._runs[state.workflow_id] = summary
            self._events[state.workflow_id] = events

    def load(self, workflow_id: str) -> WorkflowState | None:
        with self._lock:
            if workflow_id not in self._runs:
                return None
            return self._state(workflow_id)

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        f = filter or DEFAULT_FILTER
        with self._lock:
            return [self._state(s.workflow_id) for s in page(f, self._runs.values())]

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        with self._lock:
            return count_by_status(filter, list(self._runs.values()))

    def delete(self, workflow_id: str) -> None:
        with self._lock:
            self._runs.pop(workflow_id, None)
            self._events.pop(workflow_id, None)

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        summary, events = self._own(state)
        with self._lock:
            current = self._runs.get(state.workflow_id)
            if current is not None:
                check_create(state.workflow_id, current.run_id, current.status, replace_run_id)
            self._runs[state.workflow_id] = summary
            self._events[state.workflow_id] = events

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        owned = []
        for a in appends:  # validate and copy everything before taking the lock or changing anything
            check_append(a)
            if needs_summary(a):
                a = replace(a, result=decode(encode(a.result, label="result")),
                            error=decode(encode(a.error, label="error")))
            owned.append((a, [_copy_event(ev) for ev in a.events]))
        refused = []
        with self._lock:
            for a, events in owned:
                current = self._runs.get(a.workflow_id)
                history = self._events.get(a.workflow_id)
                if current is None or history is None or not accepts(current.run_id, len(history), a):
                    refused.append(a.workflow_id)
                    continue
                self._runs[a.workflow_id] = summarize(current, a)
                history.extend(events)
        return refused

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        with self._lock:
            events = self._events.get(workflow_id, ())
            return [_copy_event(ev) for ev in events[max(after, 0):]]
