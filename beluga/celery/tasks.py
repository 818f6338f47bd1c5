"""The Celery tasks of the fleet: `beluga.wake` (coordinates the woken runs of one shard),
`beluga.coordinate` (one run), `beluga.activity` (one task per attempt, shown in Flower as
`activity:<name>`), and `beluga.query`."""


from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from celery import Celery

from beluga import codec
from beluga.celery import outcome
from beluga.celery.attempts import DUE, attempt_kwargsrepr, attempt_repr, report_attempt, reporting, wait_until_due
from beluga.celery.coordinator import RunVanished
from beluga.celery.eager import EagerSlot, close_eager_slot, run_eager_slot
from beluga.celery.messages import VALIDATE_UPDATE
from beluga.celery.observe import SENT_HEADER, hand_off
from beluga.celery.outages import TRANSIENT, Quiet, retry_transient
from beluga.celery.queues import activity_queue
from beluga.celery.worker import FleetTask
from beluga.core.definitions import effective_option, registry
from beluga.core.driver import read_only
from beluga.core.errors import ConfigurationError, NonDeterminismError
from beluga.core.failure import to_failure
from beluga.logs import get_logger

log = get_logger("beluga.tasks")
_coordinating = Quiet(log, "coordinating runs")


def _eager_allowed(task: Any) -> bool:
    """Whether this activity task may run the attempts its reports lead to (BELUGA_EAGER_ACTIVITIES > 0,
    in a worker): not when Celery limits its rate or its run time (both apply to the whole task)."""
    if task.worker.settings.eager_activities <= 0:
        return False
    if task.request.is_eager or task.rate_limit or any(task.request.timelimit or ()):
        return False
    conf = task.app.conf
    return not (task.time_limit or task.soft_time_limit or conf.task_time_limit or conf.task_soft_time_limit)


def bind(app: Celery) -> None:
    """Register the fleet's tasks on `app`."""

    @app.task(name="beluga.coordinate", base=FleetTask, shared=False, bind=True, acks_late=True, max_retries=None)
    def coordinate(self: FleetTask, workflow_id: str, tried: Any = None) -> None:
        """`tried`: the versions of the run's code tried by the workers that handed it here (see roster)."""
        self.refuse_foreign()  # a message of another fleet on this broker goes back to its queue
        rt = self.worker
        slot = EagerSlot(rt.settings.eager_activities) if _eager_allowed(self) else None
        rt.slot = slot  # the run's first activity (or the next after a signal) may start right here
        try:
            rt.coordinator.run(workflow_id, tried=_tried(tried))
            _coordinating.recovered()
        except RunVanished as exc:  # the run vanished under the coordinator (deleted meanwhile)
            log.warning("%s", exc)
        except TRANSIENT as exc:  # its inbox keeps the messages; the sweep wakes the run again
            _coordinating.error("could not coordinate workflow %s (the sweep will wake it again)", workflow_id,
                                exc=exc)
        except BaseException:
            close_eager_slot(rt, slot)
            raise
        run_eager_slot(rt, slot)

    @app.task(name="beluga.wake", base=FleetTask, shared=False, bind=True, acks_late=True, max_retries=None)
    def wake(self: FleetTask, shard: int) -> None:
        self.refuse_foreign()  # a message of another fleet on this broker goes back to its queue
        rt = self.worker
        try:
            rt.wake_batch(int(shard), eager=rt.settings.eager_activities if _eager_allowed(self) else 0)
            _coordinating.recovered()
        except TRANSIENT as exc:  # the runs' inboxes keep their messages; the sweep wakes them again
            _coordinating.error("could not coordinate the runs woken in shard %s (the sweep will wake them "
                                "again)", shard, exc=exc)

    @app.task(name="beluga.activity", base=FleetTask, shared=False, bind=True, acks_late=True,
              reject_on_worker_lost=True, max_retries=None)
    def activity(self: FleetTask, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                 options: dict[str, Any]) -> None:
        self.refuse_foreign()  # a message of another fleet on this broker goes back to its queue
        rt = self.worker
        fleet = rt.fleet
        defn = registry.activities.get(name)
        if defn is None:
            log.error("activity %r is not registered in this worker (BELUGA_IMPORTS); workflow %s waits",
                      name, workflow_id)
            raise self.retry(countdown=2, headers=rt.sender.stamp())
        heartbeat_timeout = effective_option(options, defn, "heartbeat_timeout")
        wait_until_due(rt, options)
        if defn.is_async:  # room on this process's event loop first: while it is full, the message waits
            rt.async_attempts.wait_for_room()
        budget = rt.settings.lease_seconds  # how long Redis may be away before this attempt is given up
        # Every delivery claims, a first one too: only the current attempt of an open run, and only once
        # (a duplicate sent by the scheduler, or a redelivery, finds it taken), may start.
        try:
            current, details = retry_transient(
                lambda: fleet.claim(workflow_id, seq, attempt, run_id, heartbeat_timeout), budget,
                on_error=lambda exc: reporting.error("could not start attempt %s of %s seq %s; trying "
                                                      "again", attempt, workflow_id, seq, exc=exc))
        except BaseException as exc:
            if defn.is_async:
                rt.async_attempts.release()
            if not isinstance(exc, TRANSIENT):
                raise
            # its deadline lapses once this worker lets the message go
            reporting.error("giving up starting attempt %s of %s seq %s: it is dispatched again", attempt,
                             workflow_id, seq, exc=exc)
            return
        if not current:
            if defn.is_async:
                rt.async_attempts.release()
            log.info("skipping stale attempt %s of %s seq %s", attempt, workflow_id, seq)
            return
        if defn.is_async:  # the loop runs it with the others in flight and reports it; this task ends here
            rt.async_attempts.start(defn, workflow_id, run_id, seq, attempt, input, options, details,
                                    heartbeat_timeout, celery_retries=False, observed=hand_off(self.request.id))
            return None
        # An eager slot: the attempts this task's reports lead to may run right here (see EagerSlot)
        slot = EagerSlot(rt.settings.eager_activities) if _eager_allowed(self) else None
        rt.slot = slot
        try:
            reported = report_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options, details,
                                      heartbeat_timeout, heartbeat_timeout is not None)
            if reported is not None:
                message, celery_retry, next_delay = reported
                if celery_retry:  # a failed publish rejects the message; the next attempt's dispatch
                    # record remains; it is marked waiting for a worker first, as `Sender.dispatch` does. Its
                    # ETA and its due time are on the fleet's clock (see wait_until_due).
                    due = fleet.clock.now() + (next_delay or 0.0)
                    retried = {**options, DUE: due}
                    fleet.note_sent(rt.sender.waiting(workflow_id, run_id, seq, attempt + 1, name, input, retried,
                                               options.get("queue") or activity_queue(rt.settings, name),
                                               next_delay))
                    raise self.retry(args=(workflow_id, run_id, seq, attempt + 1, name, input, retried),
                                     eta=datetime.fromtimestamp(due, timezone.utc),
                                     headers=rt.sender.stamp(**{SENT_HEADER: fleet.clock.now()}),
                                     argsrepr=attempt_repr(workflow_id, run_id, seq, attempt + 1),
                                     kwargsrepr=attempt_kwargsrepr(workflow_id),
                                     exc=outcome.take_failure(message.get("payload")))
                # this attempt's exception, kept aside while eager attempts run in this thread
                failed = None if message.get("ok") else outcome.take_failure(message.get("payload"))
        except BaseException:
            close_eager_slot(rt, slot)
            raise
        run_eager_slot(rt, slot)
        if reported is None:
            return None
        if failed is not None:
            outcome.note_failure(failed)
        return outcome.settle(message, next_delay)  # the task's state says what the attempt did (Flower)

    @app.task(name="beluga.query", base=FleetTask, shared=False, bind=True)
    def query(self: FleetTask, workflow_id: str, name: str, args: list[Any], reply_to: str, tried: Any = None) -> None:
        """Answered by replaying the run here; a run whose code is missing here or does not replay goes
        to a live worker with another version, as coordination does (see roster)."""
        self.refuse_foreign()  # a message of another fleet on this broker goes back to its queue
        rt = self.worker
        state = None
        try:
            state = rt.store.load(workflow_id)
            if state is None:
                raise ConfigurationError(f"no workflow with id {workflow_id!r}")
            instance = read_only(state, registry.workflow, check_payload=rt.check)
            if name.startswith(VALIDATE_UPDATE):  # an update's validator: the caller learns only ok or why not
                value = instance.validate_update(name[len(VALIDATE_UPDATE):], *args)
            else:
                value = instance.query(name, *args)
            rt.check(value)
            rt.fleet.reply(reply_to, {"ok": True, "value": value})
        except (ConfigurationError, NonDeterminismError) as exc:
            if state is None or not rt.hand_query_on(state.workflow_type, (workflow_id, name, args, reply_to),
                                                     _tried(tried)):
                rt.fleet.reply(reply_to, {"ok": False, "error": to_failure(exc)})
        except Exception as exc:
            rt.fleet.reply(reply_to, {"ok": False, "error": to_failure(exc)})


def _tried(value: Any) -> tuple[str, ...]:
    """The code versions a handed-on message says were tried (a foreign message's: none)."""
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


__all__ = ["bind", "codec"]
