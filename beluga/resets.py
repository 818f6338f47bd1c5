"""`executor.reset(workflow_id, to=...)` for every store-backed executor: the steps around the core's
plan (`beluga.core.reset`) that are the same whichever executor drives the new run.

1. The reset point is checked against the run's history before anything changes.
2. An open run is terminated first (reason "reset to ..."), as Temporal does, and waited for.
3. The closed run is kept as `<id>/runs/<n>`, exactly as `beluga retry` keeps it (an interrupted reset
   that runs again finds that copy and makes no second one).
4. The executor stores the new run over the closed one and sets it going (`start`): its own I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beluga.core.errors import WorkflowNotFound, WorkflowNotRunning
from beluga.core.names import check_name
from beluga.core.reset import LAST_GOOD, ResetError, ResetPlan, plan_reset, resolve
from beluga.runs import archive
from beluga.stores._common import is_kept_copy

if TYPE_CHECKING:
    from beluga.core.records import WorkflowState
    from beluga.executors.base import DurableExecutor
    from beluga.stores.base import WorkflowStore

CLOSE_WAIT = 60.0  # seconds to wait for the termination of an open run that is reset


@dataclass(frozen=True)
class ResetResult:
    """What `reset` did: the new run, where the old one is kept, and what the reset threw away."""

    workflow_id: str
    run_id: str                    # the new run
    previous_run_id: str
    kept: str                      # the id the old run is kept under (<id>/runs/<n>)
    point: int                     # the old run's event the new run continues from
    dropped_events: int
    discarded_activities: list[dict[str, Any]] = field(default_factory=list)
    reapplied_signals: list[str] = field(default_factory=list)
    dropped_updates: list[str] = field(default_factory=list)
    dropped_cancel: bool = False
    terminated: bool = False       # the old run was open and was terminated first

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def reset_run(executor: DurableExecutor, store: WorkflowStore, workflow_id: str, to: int | str = LAST_GOOD, *,
              now: Callable[[], float], start: Callable[[ResetPlan], None], identity: str | None = None,
              reapply_signals: bool = True) -> ResetResult:
    """Reset the run of `workflow_id` to `to` (an event id, "first" or "last-good"); see the module."""
    from beluga.executors.base import log_write

    check_name(workflow_id, "workflow id")
    if is_kept_copy(workflow_id):
        raise ResetError(f"{workflow_id} is a kept copy of an earlier run; reset "
                         f"{workflow_id.rsplit('/runs/', 1)[0]} instead")
    state = store.load(workflow_id)
    if state is None:
        raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
    stuck_at = (state.error or {}).get("position") if state.status.is_open else None
    point = resolve(state.history, to, stuck_at)  # a bad point changes nothing, not even an open run
    terminated = state.status.is_open
    if terminated:
        state, terminated = _closed(executor, store, state, f"reset to event #{point}", identity)
    kept = archive(store, state)
    plan = plan_reset(state, point, run_id=str(uuid.uuid4()), now=now(), identity=identity,
                      reapply_signals=reapply_signals)
    start(plan)
    log_write("reset", workflow_id, identity, f"new run {plan.state.run_id} from event #{plan.point}, "
              f"{plan.dropped_events} events dropped, the old run kept as {kept}")
    return ResetResult(workflow_id, plan.state.run_id, state.run_id, kept, plan.point, plan.dropped_events,
                       plan.discarded_activities, plan.reapplied_signals, plan.dropped_updates, plan.dropped_cancel,
                       terminated)


def _closed(executor: DurableExecutor, store: WorkflowStore, state: WorkflowState, reason: str,
            identity: str | None) -> tuple[WorkflowState, bool]:
    """The open run `state` terminated and closed (and whether this call terminated it: it may have closed
    on its own meanwhile); `ResetError` when the id holds another run by then."""
    try:
        executor.terminate(state.workflow_id, reason, identity=identity)
        terminated = True
    except WorkflowNotRunning:
        terminated = False
    executor.wait_closed(state.workflow_id, CLOSE_WAIT)
    closed = store.load(state.workflow_id)
    if closed is None or closed.run_id != state.run_id or closed.status.is_open:
        raise ResetError(f"workflow {state.workflow_id} holds another run now (or did not close): look again")
    return closed, terminated
