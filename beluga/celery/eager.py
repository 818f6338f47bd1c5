"""Eager activities: an attempt that the append before recorded as dispatched, with a lease deadline,
runs right away in the process whose task led to it, instead of travelling through the broker (see
`EagerSlot`). Observers see it as any attempt (Flower's task events, logs, spans, metrics)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from beluga.celery import observe, outcome
from beluga.celery.attempts import activity_task_id, attempt_kwargsrepr, attempt_repr, report_attempt
from beluga.celery.task_events import EagerTaskEvents
from beluga.core.definitions import registry
from beluga.core.failure import to_failure
from beluga.logs import get_logger

if TYPE_CHECKING:
    from beluga.celery.holds import EagerHolds
    from beluga.celery.worker import FleetWorker

log = get_logger("beluga.tasks")
WAKE_EAGER_SECONDS = 0.5  # how long a wake batch runs its runs' next activities itself before sending the rest


class EagerSlot:
    """A task's budget of eager steps. When an activity task's report (or a coordinate task's step, such
    as a run's start) leads to a new attempt that this worker can run (see `FleetProcess.takes_eagerly`), the
    append that dispatches it gives it a lease deadline, the coordinator leaves it here instead of
    sending it through the broker, and the task runs it next, in the same process; its report may leave
    the next one. `limit` eager attempts per task at most: then the run goes back through the broker,
    and the process to whatever waits there."""

    def __init__(self, limit: int, holds: EagerHolds | None = None, async_only: bool = False) -> None:
        self.limit = limit
        self.async_only = async_only  # a reporting thread of async attempts takes only async ones
        self.used = 0
        self.next: tuple[str, str, int, int, str, Any, dict[str, Any]] | None = None
        # A wake task's batch (`holds`: the worker's, which renew the deadlines of the attempts it keeps):
        # each woken run may leave its next attempt (`limit` in all), run once the whole batch is recorded,
        # one after the other for WAKE_EAGER_SECONDS; what is left then is sent through the broker. Their
        # reports take no eager attempt after them.
        self.holds = holds
        self.batch = holds is not None
        self.picked = 0
        self.queued: list[tuple[str, str, int, int, str, Any, dict[str, Any]]] = []

    def free(self) -> bool:
        """Whether the slot takes one more attempt."""
        if self.batch:
            return self.picked < self.limit
        return self.next is None and self.used < self.limit

    def keep(self, job: tuple[str, str, int, int, str, Any, dict[str, Any]]) -> None:
        """Leave a batch's attempt here, recorded with a lease deadline, which this process renews until the
        attempt ends or is sent."""
        assert self.holds is not None, "only a wake task's batch keeps attempts"
        self.holds.add((job[0], job[2], job[3]))
        self.queued.append(job)


def run_eagerly(rt: FleetWorker, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                options: dict[str, Any]) -> None:
    """Run an attempt that the append before recorded as dispatched, with a lease deadline, and that no
    message carries: this process renews its deadline while it runs, so that if it dies the scheduler
    dispatches the attempt again within the lease, as for any lost attempt."""
    defn = registry.activities[name]
    key = (workflow_id, seq, attempt)
    rt.eager_holds.add(key)
    # observers see it as they see any attempt: Flower's task events, logs, span and metrics
    events = EagerTaskEvents(rt.task_events, rt.app, name, activity_task_id(run_id, seq),
                             attempt_repr(workflow_id, run_id, seq, attempt), attempt_kwargsrepr(workflow_id))
    events.received_and_started()
    now = rt.fleet.clock.now()
    observe.attempt_began(events.task_id, workflow_id, run_id, seq, attempt, name, options, now, now)
    if defn.is_async:  # on the process's event loop, with the others in flight; reported from there
        slot = rt.slot  # a batch's (None here) takes no eager attempt after its own
        try:
            rt.async_attempts.wait_for_room()
            rt.async_attempts.start(defn, workflow_id, run_id, seq, attempt, input, options, None, None,
                                    celery_retries=False, events=events, observed=observe.hand_off(events.task_id),
                                    eager_used=slot.used if slot is not None else rt.settings.eager_activities)
        except BaseException:
            rt.eager_holds.discard(key)
            raise
        finally:
            observe.attempt_ended(events.task_id, name, "")
        return
    reported = None
    try:
        # its retry waits in a durable timer, not in a Celery countdown message: that message would reach
        # Flower (as received) in a race with this attempt's end (retried)
        reported = report_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options, None, None, False,
                                  celery_retries=False)
    finally:
        rt.eager_holds.discard(key)
        observe_eager_end(events, name, reported)


def observe_eager_end(events: EagerTaskEvents, name: str,
                       reported: tuple[dict[str, Any], bool, float | None] | None) -> None:
    """Tell observers how an eager attempt ended, as `outcome.settle` tells Celery for an activity task
    (`reported`: None when it was given up)."""
    message = reported[0] if reported is not None else {}
    if message.get("ok"):
        events.succeeded(message.get("payload"))  # while the log records still name the run
        observe.attempt_ended(events.task_id, name, "SUCCESS")
        return
    # no task of its own settles it: its exception is taken, not left to linger in the thread
    error = outcome.take_failure(message.get("payload"))
    retried = reported is not None and reported[2] is not None
    events.failed(message.get("payload") if reported is not None else to_failure(error), retried)
    observe.attempt_ended(events.task_id, name, "RETRY" if retried else "FAILURE", error)


def run_eager_slot(rt: FleetWorker, slot: EagerSlot | None) -> None:
    """Run the attempts left in the task's eager slot, one after the other, each possibly leaving the
    next; then close the slot. Their task events go out together when the slot is done (a message per
    attempt cost a fifth of an eager step; a long attempt's start is published by the renewing thread)."""
    try:
        with rt.task_events.batched():
            if slot is not None and slot.batch and slot.queued:
                rt.slot = None  # the reports of a batch's attempts send what follows through the broker
                until = time.monotonic() + WAKE_EAGER_SECONDS
                while slot.queued and time.monotonic() < until:
                    job = slot.queued.pop(0)
                    slot.used += 1
                    run_eagerly(rt, *job)
            while slot is not None and slot.next is not None:
                job, slot.next = slot.next, None
                slot.used += 1
                run_eagerly(rt, *job)
    finally:
        close_eager_slot(rt, slot)


def close_eager_slot(rt: FleetWorker, slot: EagerSlot | None) -> None:
    """No more eager attempts in this task; one still left in the slot goes through the broker."""
    rt.slot = None
    if slot is not None and slot.next is not None:
        job, slot.next = slot.next, None
        rt.sender.dispatch(*job)
    if slot is not None and slot.queued:
        jobs, slot.queued = slot.queued, []
        held = [(wid, seq, attempt) for wid, _, seq, attempt, *_ in jobs]
        rt.eager_holds.discard(*held)
        try:  # no longer renewed here: the time allowed for a worker to take the message, as when sent
            rt.fleet.hold(held, until=rt.fleet.dispatch_deadline())
        except Exception as exc:  # noqa: BLE001 - Redis away: sent all the same (the broker queue is looked into)
            log.debug("could not move the deadlines of attempts sent after a wake batch: %s", exc)
        for job in jobs:
            rt.sender.dispatch(*job)

