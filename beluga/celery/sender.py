"""What a worker or client sends through the broker (`Sender`): the wake and coordinate tasks of runs,
a run handed on to a worker that has its code, and activity attempts. Sending never raises: whatever
is lost is sent again by the scheduler's sweep or past the attempt's deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from beluga.bridge import blocking
from beluga.celery import roster
from beluga.celery.attempts import activity_task_id, attempt_kwargsrepr, attempt_repr
from beluga.celery.eager import EagerSlot
from beluga.celery.fleet import Fleet, Waiting
from beluga.celery.foreign import FLEET_HEADER
from beluga.celery.observe import SENT_HEADER
from beluga.celery.outages import TRANSIENT, Quiet
from beluga.celery.queues import activity_queue
from beluga.celery.report import CARRIED
from beluga.core.definitions import registry
from beluga.core.priority import DEFAULT, broker_priority
from beluga.logs import get_logger
from beluga.settings import Settings

log = get_logger("beluga.tasks")
# Through an outage each process logs a topic's first error, then a line every ten seconds at most.
sending = Quiet(log, "sending tasks to the broker")


class Sender:
    """Sends a process's tasks with its Celery `app`. `slot` gives the eager slot of the task running in
    the calling thread (an attempt may be left there instead of sent, see EagerSlot; a client's: None)."""

    def __init__(self, app: Celery, settings: Settings, fleet: Fleet, slot: Callable[[], EagerSlot | None]) -> None:
        self.app = app
        self.settings = settings
        self.fleet = fleet
        self._slot = slot
        self._broker: Any = None  # a connection to a Redis broker, for its queues' lengths (the scheduler's)

    def wake(self, workflow_id: str, queue: str | None) -> None:
        """Have a coordinator look at the run. Without a queue the run joins its shard's wake set, and
        the shard's wake task (sent unless one is queued or running) coordinates it with the others
        there; with a queue (a run whose code only some workers have), a coordinate task of its own goes
        to that queue. Never raises: a wake is only ever sent for a run with messages in its inbox, and
        the scheduler's sweep wakes such runs again should this one be lost."""
        if queue is None:
            try:
                shards = self.fleet.wake([workflow_id])
            except Exception as exc:  # noqa: BLE001 - Redis away: a task of its own, as with a queue
                log.debug("could not add workflow %s to its wake set: %s", workflow_id, exc)
            else:
                for shard in shards:
                    self.wake_shard(shard)
                return
        try:
            self.send("beluga.coordinate", (workflow_id,), queue=queue or None,
                      shadow="coordinate",  # per-name counters: no ids
                      argsrepr=repr((workflow_id,)), kwargsrepr=attempt_kwargsrepr(workflow_id))
            sending.recovered()
        except Exception as exc:
            sending.error("could not wake workflow %s (the sweep will)", workflow_id, exc=exc)

    def wake_shard(self, shard: int) -> None:
        """Send the shard's wake task (its waking lease is ours). Never raises: should it be lost, the
        lease lapses and the scheduler's sweep sends the task again."""
        try:
            self.send("beluga.wake", (shard,), shadow="wake", argsrepr=repr((shard,)), kwargsrepr="{}")
            sending.recovered()
        except Exception as exc:
            sending.error("could not send the wake task of shard %s (the sweep will)", shard, exc=exc)

    def hand_on(self, workflow_id: str, handoff: roster.Handoff) -> None:
        """Send the run's coordinate task to `handoff`'s worker. Never raises: should it be lost, the run
        stays dirty and the sweep wakes it again."""
        log.info("workflow %s: its code is missing here or does not match its history; handed on to worker %s "
                 "(versions tried: %s)", workflow_id, handoff.worker, ", ".join(v or "none" for v in handoff.tried))
        try:
            self.send("beluga.coordinate", (workflow_id, list(handoff.tried)), queue=handoff.queue,
                      shadow="coordinate", argsrepr=repr((workflow_id,)), kwargsrepr=attempt_kwargsrepr(workflow_id))
            sending.recovered()
        except Exception as exc:
            sending.error("could not hand workflow %s on (the sweep will wake it again)", workflow_id, exc=exc)

    def dispatch(self, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                 options: dict[str, Any], eager: bool = False, countdown: float | None = None) -> None:
        """Send an attempt through the broker (or leave it in this thread's eager slot), as the Celery task
        of its activity call (`activity_task_id`): every attempt of one call is one task in Flower, its
        retries counted, as `Task.retry` keeps a task's id."""
        slot = self._slot()
        if eager and slot is not None and slot.batch:
            slot.keep((workflow_id, run_id, seq, attempt, name, input, options))
            return
        if eager and slot is not None and slot.next is None:
            slot.next = (workflow_id, run_id, seq, attempt, name, input, options)
            return
        queue = options.get("queue") or activity_queue(self.settings, name)
        if name not in self._known_activities():
            log.warning("no worker has announced activity %r: workflow %s waits in queue %s until one that "
                        "imports its module joins", name, workflow_id, queue)
        try:  # marked waiting for a worker first: the claim that starts it drops the mark
            self.fleet.note_sent(self.waiting(workflow_id, run_id, seq, attempt, name, input, options, queue,
                                              countdown))
        except Exception as exc:  # not sent: its deadline lapses unmarked, and it is dispatched again
            sending.error("could not send attempt %s of %s seq %s (dispatched again within %gs)", attempt,
                           workflow_id, seq, self.settings.lease_seconds, exc=exc)
            return
        self.publish((workflow_id, run_id, seq, attempt, name, input, options), queue, countdown)

    def waiting(self, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                options: dict[str, Any], queue: str, countdown: float | None = None) -> Waiting:
        """The record of an attempt about to be sent (see `Fleet.note_sent`); its schedule-to-start
        deadline counts from when it is due."""
        now = self.fleet.clock.now()
        to_start = options.get("schedule_to_start_timeout")
        kept = {k: v for k, v in options.items() if k != CARRIED}  # a resent message reads the store instead
        return Waiting((workflow_id, run_id, seq, attempt, name, input, kept), queue, now,
                       now + (countdown or 0.0) + to_start if to_start else None)

    def publish(self, args: tuple[Any, ...], queue: str, countdown: float | None = None) -> None:
        """Send an attempt's message: the Celery task of its activity call (`activity_task_id`)."""
        workflow_id, run_id, seq, attempt, name, _, options = args
        defn = registry.activities.get(name)
        # an async attempt's task hands it to the event loop, which enforces its timeout: a Celery time
        # limit would count its wait for room, and a hard one would kill the process with the loop's others
        timeout = None if defn is not None and defn.is_async else options.get("timeout")
        priority = broker_priority(options.get("priority", DEFAULT), self.settings.broker_is_redis)
        try:
            self.send(
                "beluga.activity", args, queue=queue, shadow=f"activity:{name}",
                headers={SENT_HEADER: self.fleet.clock.now()},
                argsrepr=attempt_repr(workflow_id, run_id, seq, attempt), kwargsrepr=attempt_kwargsrepr(workflow_id),
                soft_time_limit=timeout, time_limit=(timeout * 1.5 + 5) if timeout else None, countdown=countdown,
                task_id=activity_task_id(run_id, seq), retries=attempt - 1,
                **({} if priority is None else {"priority": priority}))
            sending.recovered()
        except Exception as exc:  # it waits for a worker: the scheduler sends it again past its deadline
            sending.error("could not send attempt %s of %s seq %s (sent again within %gs)", attempt,
                           workflow_id, seq, self.settings.lease_seconds, exc=exc)

    def send(self, task: str, args: tuple[Any, ...], *, headers: dict[str, Any] | None = None,
             **options: Any) -> Any:
        """Publish the Celery task `task` with its arguments and `apply_async` options, stamped with this
        process's headers (`stamp`): every message this process sends goes through here. In the async
        client, on its publisher thread (kombu publishes synchronously, see beluga/bridge.py)."""
        stamped = self.stamp(**(headers or {}))
        return blocking(lambda: self.app.tasks[task].apply_async(args, headers=stamped, **options))

    def stamp(self, **headers: Any) -> dict[str, Any]:
        """The headers of a message this process sends: its fleet's id (see foreign.py) and `headers`."""
        return {FLEET_HEADER: self.fleet.identity(), **headers}

    def queue_length(self, queue: str) -> int | None:
        """How many messages wait in a Redis broker's `queue` (its list and those of kombu's priority steps,
        where attempts of a lower priority wait: one round trip), None for another broker or when the
        broker does not answer."""
        if not self.settings.broker_is_redis:
            return None
        try:
            if self._broker is None:
                self._broker = self.app.connection_for_write()
            channel = self._broker.default_channel
            with channel.client.pipeline(transaction=False) as pipe:
                for step in sorted({channel.priority(p) for p in channel.priority_steps}):
                    pipe.llen(channel._q_for_pri(queue, step))
                return sum(int(n) for n in pipe.execute())
        except Exception as exc:  # noqa: BLE001 - only tells whether to send an untaken attempt again
            log.debug("could not read the length of queue %s: %s", queue, exc)
            return None

    def _known_activities(self) -> set[str]:
        try:
            return self.fleet.known_activities()
        except TRANSIENT:
            return {*registry.activities}  # only for a warning: do not let it stop the dispatch
