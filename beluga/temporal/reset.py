"""`TemporalExecutor.reset`: Temporal's own ResetWorkflowExecution. Temporal keeps the old run itself
(as an earlier run of the same workflow id, with its whole history), terminates it first when it is
open, and re-applies the signals after the point (`RESET_REAPPLY_TYPE_SIGNAL`, unless asked not to).

The reset point is one of Temporal's own events, a `WorkflowTaskCompleted` (as `temporal workflow reset
--event-id` takes): the workflow task it ends is run again on the current code, so the commands it issued
are redone. "first" is the run's first completed workflow task; "last-good" the last one before the step
that led to the first failure (for an activity or child that failed, before it was scheduled; for a
workflow task that failed, before that task: the usual mark of a bad deploy on Temporal). An event id
given must be a `WorkflowTaskCompleted` of the run's history (`temporal workflow show` lists them); any
other is refused, naming the nearest."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from temporalio.api.common import v1 as cmn
from temporalio.api.enums.v1 import EventType as TE
from temporalio.api.enums.v1 import ResetReapplyType
from temporalio.api.workflowservice import v1 as wsv

from beluga.core.reset import FIRST, LAST_GOOD, ResetError
from beluga.resets import ResetResult

if TYPE_CHECKING:
    from beluga.temporal.executor import TemporalExecutor

_FAILURES = (TE.EVENT_TYPE_ACTIVITY_TASK_FAILED, TE.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
             TE.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED, TE.EVENT_TYPE_WORKFLOW_TASK_FAILED,
             TE.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, TE.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)


def temporal_point(events: list[Any], to: int | str) -> int:
    """The `WorkflowTaskCompleted` event id `to` names in Temporal's history `events`."""
    tasks = [e.event_id for e in events if e.event_type == TE.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    if not tasks:
        raise ResetError("the run has completed no workflow task yet: there is nothing to reset to")
    if to == FIRST:
        return int(tasks[0])
    if to == LAST_GOOD:
        failure = next((e for e in events if e.event_type in _FAILURES), None)
        if failure is None:
            raise ResetError("the run has no failure to reset before; give an event id or 'first'")
        anchor = _anchor(failure)
        before = [t for t in tasks if t < anchor]
        if not before:
            raise ResetError(f"no completed workflow task before event #{anchor}")
        return int(before[-1])
    try:
        event_id = int(to)
    except (TypeError, ValueError):
        raise ResetError(f"reset point {to!r}: give an event id, 'first' or 'last-good'") from None
    if event_id not in tasks:
        near = [t for t in tasks if t < event_id][-1:] + [t for t in tasks if t > event_id][:1]
        raise ResetError(f"event #{event_id} is not a workflow-task boundary: on Temporal, reset to a "
                         f"WorkflowTaskCompleted event; the nearest are {' and '.join(f'#{t}' for t in near)}")
    return event_id


def _anchor(failure: Any) -> int:
    """Where the step that led to `failure` began: the activity's or child's scheduling, else itself."""
    if failure.event_type == TE.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        return int(failure.activity_task_failed_event_attributes.scheduled_event_id)
    if failure.event_type == TE.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        return int(failure.activity_task_timed_out_event_attributes.scheduled_event_id)
    if failure.event_type == TE.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
        return int(failure.child_workflow_execution_failed_event_attributes.initiated_event_id)
    return int(failure.event_id)


def _thrown_away(events: list[Any], point: int) -> dict[str, Any]:
    """What the events after `point` held: activity results, signals, a cancel request."""
    names = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
             for e in events if e.event_type == TE.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    rest = [e for e in events if e.event_id > point]
    ended = []
    for e in rest:
        if e.event_type == TE.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            ended.append(e.activity_task_completed_event_attributes.scheduled_event_id)
        elif e.event_type == TE.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            ended.append(e.activity_task_failed_event_attributes.scheduled_event_id)
    return {"dropped_events": len(rest),
            "discarded_activities": [{"seq": int(s), "name": names.get(s)} for s in ended],
            "signals": [e.workflow_execution_signaled_event_attributes.signal_name for e in rest
                        if e.event_type == TE.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED],
            "dropped_cancel": any(e.event_type == TE.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED for e in rest)}


async def reset(ex: TemporalExecutor, workflow_id: str, to: int | str, identity: str | None,
                reapply_signals: bool) -> ResetResult:
    handle = ex.client.get_workflow_handle(workflow_id)
    described = await handle.describe()
    events = [e async for e in handle.fetch_history_events()]
    point = temporal_point(events, to)
    reapply = (ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL if reapply_signals
               else ResetReapplyType.RESET_REAPPLY_TYPE_NONE)
    got = await ex.client.workflow_service.reset_workflow_execution(wsv.ResetWorkflowExecutionRequest(
        namespace=ex.client.namespace,
        workflow_execution=cmn.WorkflowExecution(workflow_id=workflow_id, run_id=described.run_id),
        reason=f"reset to event #{point}", workflow_task_finish_event_id=point, request_id=str(uuid.uuid4()),
        reset_reapply_type=reapply, identity=ex._identity(identity)))
    lost = _thrown_away(events, point)
    return ResetResult(workflow_id, got.run_id, described.run_id, f"{workflow_id} (run {described.run_id}, kept by "
                       "Temporal)", point, lost["dropped_events"], lost["discarded_activities"],
                       lost["signals"] if reapply_signals else [], [], lost["dropped_cancel"],
                       described.status is not None and described.status.name == "RUNNING")
