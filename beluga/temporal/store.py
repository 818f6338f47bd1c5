"""`TemporalStore`: the runs of the `temporal` executor, read from Temporal's visibility.

    store = workflow.new_store("temporal", target="127.0.0.1:7233", namespace="default")

Temporal owns the histories of the runs it executes, so this store is read-and-delete only:

- `load(id)`: the current run (Temporal's `DescribeWorkflowExecution`, its result or failure, and its
  Beluga history, answered by a worker through a query; without a worker, the start event only).
- `list(WorkflowFilter(status=..., workflow_type=...))`: Temporal's visibility (`ListWorkflowExecutions`
  with `WorkflowType = '...' AND ExecutionStatus = '...'`), newest first. Visibility is eventually
  consistent: a run started a moment ago may not be listed yet. Listed runs carry no history (`load` one
  for it); `canceled` lists Temporal's `Canceled` and `Terminated` runs. `where` (search attributes) is
  applied here to the runs visibility lists, from each run's memo, where the executor keeps them (Temporal's
  own search attributes need registering on the server): a scan, not an index.
- `delete(id)`: `DeleteWorkflowExecution` for each run of the id. Temporal deletes in the background: a
  running run is terminated and gone at once, a closed run once the server has saved its queues' progress
  past the close (30 s by default; see `delete`). An unknown id is no error.
- `save`, `create`, `append`: refused with `ConfigurationError`. Runs are written by executing them on the
  `temporal` executor; a history cannot be imported into Temporal through this store.

Requires the `temporal` extra: `pip install 'beluga-workflows[temporal]'`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from beluga.core.errors import ConfigurationError, WorkflowNotFound
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores._common import matches, page
from beluga.stores.base import WorkflowStore

# raises the extra's error without temporalio
from beluga.temporal.executor import _STATUS, Connection, TemporalExecutor, beluga_memo

_VISIBILITY = {WorkflowStatus.RUNNING: ("Running",), WorkflowStatus.COMPLETED: ("Completed",),
               WorkflowStatus.FAILED: ("Failed",), WorkflowStatus.CANCELED: ("Canceled", "Terminated"),
               WorkflowStatus.TIMED_OUT: ("TimedOut",)}


def visibility_query(filter: WorkflowFilter) -> str:
    """Temporal's list filter for a Beluga filter: its type, status and id prefix, and its cursors as
    bounds on the start time (ties, stuck runs and kept copies are told apart by `list`)."""
    parts = []
    if filter.workflow_type:
        parts.append(f"WorkflowType = '{_quote(filter.workflow_type)}'")
    if filter.status is not None:
        names = " OR ".join(f"ExecutionStatus = '{name}'" for name in _VISIBILITY[filter.status])
        parts.append(f"({names})")
    if filter.id_prefix:
        parts.append(f"WorkflowId STARTS_WITH '{_quote(filter.id_prefix)}'")
    if filter.after is not None:
        parts.append(f"StartTime <= '{_iso(filter.after[0])}'")
    if filter.before is not None:
        parts.append(f"StartTime >= '{_iso(filter.before[0])}'")
    return " AND ".join(parts)


def _iso(ts: float) -> str:
    """A start time bound a little wide (visibility keeps microseconds; the exact edge is `list`'s)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


class TemporalStore(WorkflowStore):
    """Store `"temporal"`: `target`, `namespace`, or a `connection` (TLS, keys: see `Connection`) (a client
    only; it runs no worker)."""

    def __init__(self, target: str = "127.0.0.1:7233", namespace: str = "default", *,
                 query_timeout: float = 10.0, connection: Connection | None = None) -> None:
        connection = connection or Connection(target, namespace)
        self.namespace = connection.namespace
        self._client = TemporalExecutor(connection=connection, query_timeout=query_timeout)

    def load(self, workflow_id: str) -> WorkflowState | None:
        try:
            return self._client.describe(workflow_id)
        except WorkflowNotFound:
            return None

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        try:
            return self._client.summary(workflow_id)
        except WorkflowNotFound:
            return None

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        filter = filter or WorkflowFilter()
        return self._client._run(self._list(filter))

    async def _list(self, filter: WorkflowFilter) -> builtins.list[WorkflowState]:
        """Newest first from visibility; the page past a cursor (`before`: every run newer than it is read,
        the nearest kept) and the conditions visibility cannot say applied here (`_common.page`)."""
        out: builtins.list[WorkflowState] = []
        backward, kept = filter.before is not None and filter.after is None, 0
        async for ex in self._client.client.list_workflows(visibility_query(filter) or None):
            status = _STATUS.get(ex.status, WorkflowStatus.RUNNING) if ex.status else WorkflowStatus.RUNNING
            created = ex.start_time.timestamp()
            updated = ex.close_time.timestamp() if ex.close_time else created
            parent = {"workflow_id": ex.parent_id, "run_id": ex.parent_run_id} if ex.parent_id else None
            attributes, memo = await beluga_memo(ex)  # in the listing already: no extra call
            out.append(WorkflowState(ex.id, ex.run_id, ex.workflow_type, status, None, None, None, created, updated,
                                     (), ex.task_queue, parent, attributes, memo))
            kept += matches(filter, out[-1])
            if not backward and kept > filter.limit:  # newest first: the page is in hand
                break
        return page(filter, out)

    def delete(self, workflow_id: str) -> None:
        """Delete every run of `workflow_id` (`DeleteWorkflowExecution` per run: its current run, and the
        earlier runs of a continue-as-new chain that visibility lists). Temporal carries a delete out in the
        background: a running run is terminated and gone within a moment; a closed run only once the
        server has saved its queues' progress past the run's close (`history.transferProcessorUpdateAckInterval`
        and `history.visibilityProcessorUpdateAckInterval`, 30 s by default: about 30 s on a default dev
        server). Until then `load` still returns it. An unknown id is no error."""
        self._client._run(self._delete(workflow_id))

    async def _delete(self, workflow_id: str) -> None:
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
        from temporalio.service import RPCError, RPCStatusCode

        runs: builtins.list[str] = []
        try:
            runs.append((await self._client.client.get_workflow_handle(workflow_id).describe()).run_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        async for ex in self._client.client.list_workflows(f"WorkflowId = '{_quote(workflow_id)}'"):
            if ex.run_id not in runs:
                runs.append(ex.run_id)
        for run_id in runs:
            request = DeleteWorkflowExecutionRequest(namespace=self.namespace, workflow_execution=WorkflowExecution(
                workflow_id=workflow_id, run_id=run_id))
            try:
                await self._client.client.workflow_service.delete_workflow_execution(request)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise

    def save(self, state: WorkflowState) -> None:
        raise _read_only("save")

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        raise _read_only("create")

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        raise _read_only("append")

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        state = self.load(workflow_id)
        return [] if state is None else [ev for ev in state.history if ev.id > after]

    def close(self) -> None:
        self._client.close()


def _read_only(what: str, *_: Any) -> ConfigurationError:
    return ConfigurationError(f"the 'temporal' store cannot {what}: Temporal owns the histories of its runs; "
                              "run workflows on the 'temporal' executor (workflow.new('temporal')) instead")
