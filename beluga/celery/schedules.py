"""Schedules on the fleet: every worker's scheduler loop calls `fire_due_schedules` each round, so no beat
process is needed and any number of workers may run. Exactly one run per tick comes from two things
(beluga/schedules.py): the tick is decided by the one worker whose write of the schedule's record wins
(schedule_put.lua, conditional on its version), and the run it starts has the workflow id and request id
the tick fixes, so starting it again (a worker that died after starting it, before noting it) returns the
same run (start.lua). Times are the history Redis's (`FleetClock`), as every worker's."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from beluga.celery import messages
from beluga.celery.fleet_scripts import PushReply
from beluga.celery.outages import TRANSIENT, Quiet
from beluga.core.schedules import Action, Schedule
from beluga.core.steps import CancelRequested, Terminate
from beluga.executors.base import WorkflowOptions
from beluga.logs import get_logger
from beluga.schedules import ScheduleService, identity_of

log = get_logger("beluga.schedules")
_services: weakref.WeakKeyDictionary[Any, ScheduleService] = weakref.WeakKeyDictionary()


class FleetRuns:
    """`ScheduledRuns` on the fleet, through the process's runtime `rt` (a worker's or a client's)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def start(self, s: Schedule, action: Action) -> None:
        options = WorkflowOptions(id=action.workflow_id, input=s.input, queue=s.queue, timeout=s.timeout,
                                  identity=identity_of(s.id))
        self.rt.begin_run(s.workflow_type, action.workflow_id, options, f"schedule:{action.workflow_id}")
        self.rt.sender.wake(action.workflow_id, s.queue)  # never raises: the sweep wakes it otherwise

    def stop(self, s: Schedule, action: Action) -> None:
        who = identity_of(s.id)
        why = "a newer run of its schedule started"
        what = CancelRequested(who) if action.kind == "cancel" else Terminate(why, who)
        request_id = f"schedule:{action.kind}:{action.workflow_id}"
        got = self.rt.fleet.push_input(action.workflow_id, messages.encode(what), request_id)
        if got not in (PushReply.NO_RUN, PushReply.CLOSED):
            self.rt.sender.wake(action.workflow_id, None)

    def closed(self, workflow_ids: Sequence[str]) -> set[str]:
        states = self.rt.fleet.store.load_summaries(list(workflow_ids))
        return {wid for wid, st in zip(workflow_ids, states, strict=True) if st is None or not st.status.is_open}


def service(rt: Any) -> ScheduleService:
    """The schedule service of the process's runtime, built once (kept by its fleet: one per runtime)."""
    found = _services.get(rt.fleet)
    if found is None:
        found = _services[rt.fleet] = ScheduleService(rt.fleet.store.schedules(), FleetRuns(rt), rt.fleet.clock.now)
    return found


_quiet = Quiet(log, "firing schedules")


def fire_due_schedules(rt: Any, now: float) -> int:
    """One round of the scheduler: plan and start what is due (see the module's docstring). Redis being
    away is the round's failure, as for the rest of the loop; any other error is one schedule's (a record
    that does not decode...): logged (at most a line every few seconds) and left to the next round, while
    the other schedules fire and the loop goes on with its other duties."""
    errors = []

    def failed(schedule_id: str, exc: Exception) -> None:
        if isinstance(exc, TRANSIENT):
            raise exc
        errors.append(schedule_id)
        _quiet.error("schedule %s could not fire; trying again next round", schedule_id, exc=exc)

    done = service(rt).fire_due(now, on_error=failed)
    if not errors:
        _quiet.recovered()
    return done
