"""The contract every store implements, method by method. `tests/stores/test_contract.py` holds it to
each implementation.

A store holds one current run per workflow id: its summary (`WorkflowState` without history) and its
append-only history. Writers never interleave: `append` is conditional on the version the writer read
(optimistic concurrency), so two engines racing on one run cannot both extend it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from beluga.core.errors import ConfigurationError
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState
from beluga.stores._common import count_by_status, counting

if TYPE_CHECKING:
    from beluga.stores.schedule_store import ScheduleStore


class WorkflowStore(ABC):
    # --- the reference's four -------------------------------------------------------------------
    @abstractmethod
    def save(self, state: WorkflowState) -> None:
        """Write `state` whole (summary and history), replacing whatever the id held. For tools and
        imports; the engine itself uses `create` and `append`, which never lose a concurrent write."""

    @abstractmethod
    def load(self, workflow_id: str) -> WorkflowState | None:
        """The current run of `workflow_id` with its full history, or None."""

    @abstractmethod
    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """Runs matching `filter` (status, workflow type, id prefix, stuck, kept copies), newest `created_at`
        first (then `workflow_id`, descending), at most `filter.limit`, past its cursors (`after`, `before`:
        see `WorkflowFilter`). Histories are included."""

    @abstractmethod
    def delete(self, workflow_id: str) -> None:
        """Forget the run and its history. Deleting an unknown id is not an error."""

    # --- what the engine needs ------------------------------------------------------------------
    @abstractmethod
    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        """Insert a new run. Raises `WorkflowAlreadyStarted` when the id holds an open run, except that
        `replace_run_id` atomically replaces that very run (continue-as-new); a closed run is replaced."""

    @abstractmethod
    def append(self, appends: Sequence[Append]) -> list[str]:
        """Apply each append atomically, in order, each conditional on its run's id and version.
        Returns the workflow ids whose append was refused (another writer came first, or the run is
        gone or was replaced); the others are durable when this returns."""

    @abstractmethod
    def history(self, workflow_id: str, after: int = 0) -> list[Event]:
        """Events of the current run with `id > after`, in order."""

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        """The current run without its history: what status checks and result waits need. Stores
        that keep the summary apart override this to skip reading the history."""
        state = self.load(workflow_id)
        return None if state is None else replace(state, history=())

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        """How many runs the store holds by status (`{"running": 3, "completed": 10, ...}`, every status
        present): those `list(filter)` shows over all its pages, whatever the filter's status, limit and
        cursors (a string: a workflow type). For dashboards and metrics; stores override it with a cheaper
        query than this reading of every run."""
        f = counting(filter)
        return count_by_status(f, self.list(replace(f, limit=2**62)))

    def schedules(self) -> ScheduleStore:
        """The schedules kept beside the runs (beluga/stores/schedule_store.py); stores that keep none raise
        ConfigurationError."""
        raise ConfigurationError(f"{type(self).__name__} keeps no schedules: use the memory, SQLite or Redis store")

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release connections; the default holds none."""
