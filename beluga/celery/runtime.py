"""The per-process state of a worker or client (`Runtime`): Redis connections, the coordinator and
its cache, how runs are woken and attempts sent; and the renewal of the attempts a worker holds."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery

from beluga.celery import messages, roster
from beluga.celery.attempts import activity_task_id, attempt_kwargsrepr, attempt_repr
from beluga.celery.coordinator import Coordinator, RunVanished
from beluga.celery.eager import EagerSlot, close_eager_slot, run_eager_slot
from beluga.celery.fleet import Fleet, Waiting
from beluga.celery.holds import EagerHolds, Holds
from beluga.celery.observe import SENT_HEADER
from beluga.celery.outages import TRANSIENT, Quiet
from beluga.celery.queues import activity_queue, worker_queue
from beluga.celery.report import CARRIED, AttemptReport
from beluga.celery.scheduler import Scheduler
from beluga.core.definitions import registry
from beluga.core.failure import to_failure
from beluga.core.steps import ChildClosed, StartChild
from beluga.logs import get_logger
from beluga.runs import new_run_state, payload_checker
from beluga.settings import Settings
from beluga.stores.redis import RedisStore, on_primary

log = get_logger("beluga.tasks")
# Through an outage each process logs a topic's first error, then a line every ten seconds at most.
_sending = Quiet(log, "sending tasks to the broker")
WAKE_BATCH = 100  # runs a wake task takes from its shard's wake set at a time
WAKE_LINGER = 0.002  # a wake task that found its shard's wake set empty looks once more after this long
# (short: a run woken meanwhile waits for it, as a signal's next activity does)


class Runtime:
    """Per-process state of a worker or client: Redis connections, the coordinator and its cache."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.store = RedisStore(settings.history_url, prefix=settings.key_prefix,
                                append_replicas=settings.append_replicas,
                                append_replicas_timeout=settings.append_replicas_timeout,
                                # a WAIT for replicas is one reply that may take append_replicas_timeout
                                socket_timeout=max(settings.redis_socket_timeout,
                                                   settings.append_replicas_timeout + 1.0
                                                   if settings.append_replicas else 0.0),
                                connect_timeout=settings.redis_connect_timeout)
        self.fleet = Fleet(self.store, settings.lease_seconds, undelivered_lapse=settings.broker_is_redis)
        self.check = payload_checker(settings.max_payload_bytes)
        self.coordinator = Coordinator(self.fleet, registry, dispatch=self.dispatch, wake=self.wake,
                                       start_child=self.start_child, check_payload=self.check,
                                       stuck_retry=settings.stuck_retry_seconds, eager=self.takes_eagerly,
                                       elsewhere=self.elsewhere, hand_on=self.hand_on)
        self.worker: str | None = None  # this worker's Celery node name, once it is set up (None: a client)
        self._versions: dict[str, str] | None = None
        # what this worker holds: the attempts whose messages its consumer took (`holds`) and those this
        # process runs eagerly, which no message carries (`eager_holds`)
        self.holds = Holds(self.fleet)
        self.eager_holds = EagerHolds(self.fleet)
        self._local = threading.local()  # the eager slot of the activity task running in this thread
        self._broker: Any = None  # a connection to a Redis broker, for its queues' lengths (the scheduler's)
        self.scheduler = Scheduler(self, app)  # started in a worker's main process once it is ready

    @property
    def slot(self) -> EagerSlot | None:
        """The eager slot of the task running in this thread (None: every attempt goes through the broker)."""
        return getattr(self._local, "slot", None)

    @slot.setter
    def slot(self, slot: EagerSlot | None) -> None:
        self._local.slot = slot

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
            self.app.tasks["beluga.coordinate"].apply_async((workflow_id,), queue=queue or None,
                                                           shadow="coordinate",  # per-name counters: no ids
                                                           argsrepr=repr((workflow_id,)),
                                                           kwargsrepr=attempt_kwargsrepr(workflow_id))
            _sending.recovered()
        except Exception as exc:
            _sending.error("could not wake workflow %s (the sweep will)", workflow_id, exc=exc)

    def wake_shard(self, shard: int) -> None:
        """Send the shard's wake task (its waking lease is ours). Never raises: should it be lost, the
        lease lapses and the scheduler's sweep sends the task again."""
        try:
            self.app.tasks["beluga.wake"].apply_async((shard,), shadow="wake", argsrepr=repr((shard,)),
                                                      kwargsrepr="{}")
            _sending.recovered()
        except Exception as exc:
            _sending.error("could not send the wake task of shard %s (the sweep will)", shard, exc=exc)

    def wake_batch(self, shard: int, rounds: int = 10, eager: int = 0) -> None:
        """The shard's wake task: coordinate the runs in its wake set, WAKE_BATCH at a time, until the
        set is empty (which releases the shard's waking lease). After `rounds` batches, a new task takes
        over, so that other work queued meanwhile gets its turn. `eager`: the eager budget (see
        `EagerSlot`) of a batch of one run, which is then coordinated as a coordinate task would (its
        next activity may start right here); in a batch of several, each run's next activity may start
        right here once the whole batch is recorded, for WAKE_EAGER_SECONDS, and the rest go through the
        broker, so that long activities neither hold the batch's other runs back nor keep the pool's
        other processes idle."""
        for _ in range(rounds):
            # While signals stream in, a task that finds the set empty lingers a moment with the shard's
            # waking lease held and looks again: the runs woken meanwhile send no wake task of their own.
            workflow_ids = self.fleet.take_wakes(shard, WAKE_BATCH, keep=True)
            if not workflow_ids:
                time.sleep(WAKE_LINGER)
                workflow_ids = self.fleet.take_wakes(shard, WAKE_BATCH)
                if not workflow_ids:
                    return
            if eager > 0 and len(workflow_ids) == 1:
                slot: EagerSlot | None = EagerSlot(eager)
            else:  # each woken run's next activity may start right here, once the batch is recorded
                slot = EagerSlot(len(workflow_ids), batch=True) if eager > 0 else None
            self.slot = slot
            try:
                self.coordinator.run_many(workflow_ids)
            except BaseException:
                close_eager_slot(self, slot)
                raise
            run_eager_slot(self, slot)
        self.wake_shard(shard)

    def coordinate_here(self, workflow_id: str, report: AttemptReport | None = None) -> None:
        """Run the coordinator right here, saving a task hop: after an activity attempt (handing over
        its outcome), or at the start of a run by a client that has the code. If the run cannot be
        driven in this process, the coordinate task, which waits for a worker that can, takes over
        (an attempt's outcome is queued already)."""
        try:
            self.coordinator.run(workflow_id, report)
        except RunVanished:  # the report is queued already; the coordinate task takes it from here
            self.wake(workflow_id, None)

    # --- which worker has which code (see roster) -----------------------------------------------------
    def versions(self) -> dict[str, str]:
        """The code digest of each workflow this process has (its imports are done before it is asked)."""
        if self._versions is None:
            self._versions = roster.versions(registry.workflows)
        return self._versions

    def announce(self) -> None:
        """Say that this worker is alive, with its queue and its workflows' versions, for a lease (the
        scheduler renews it; a worker that dies is forgotten a lease later)."""
        if self.worker is not None:
            record = roster.encode(roster.Announcement(self.worker, worker_queue(self.settings, self.worker),
                                                       self.versions()))
            self.fleet.announce_worker(self.worker, record, self.settings.lease_seconds)

    def withdraw(self) -> None:
        """A clean shutdown: no run is handed on to this worker any more (best effort)."""
        if self.worker is not None:
            try:
                self.fleet.withdraw_worker(self.worker)
            except Exception as exc:  # noqa: BLE001 - its announcement expires within a lease anyway
                log.debug("could not withdraw worker %s: %s", self.worker, exc)

    def elsewhere(self, workflow_type: str, tried: tuple[str, ...]) -> roster.Handoff | None:
        """A live worker that may drive a run of `workflow_type` this process cannot (see `roster.pick`)."""
        live = [a for name, raw in self.fleet.live_workers() if (a := roster.decode(name, raw)) is not None]
        return roster.pick(workflow_type, self.versions().get(workflow_type, roster.MISSING), tried, live,
                           self.worker)

    def hand_on(self, workflow_id: str, handoff: roster.Handoff) -> None:
        """Send the run's coordinate task to `handoff`'s worker. Never raises: should it be lost, the run
        stays dirty and the sweep wakes it again."""
        log.info("workflow %s: its code is missing here or does not match its history; handed on to worker %s "
                 "(versions tried: %s)", workflow_id, handoff.worker, ", ".join(v or "none" for v in handoff.tried))
        try:
            self.app.tasks["beluga.coordinate"].apply_async((workflow_id, list(handoff.tried)), queue=handoff.queue,
                                                           shadow="coordinate", argsrepr=repr((workflow_id,)),
                                                           kwargsrepr=attempt_kwargsrepr(workflow_id))
            _sending.recovered()
        except Exception as exc:
            _sending.error("could not hand workflow %s on (the sweep will wake it again)", workflow_id, exc=exc)

    def hand_query_on(self, workflow_type: str, args: tuple[Any, ...], tried: tuple[str, ...]) -> bool:
        """Send a query this process cannot answer (`args`: the query task's) to a live worker that may:
        False when there is none (the caller replies with its error)."""
        handoff = self.elsewhere(workflow_type, tried)
        if handoff is None:
            return False
        try:
            self.app.tasks["beluga.query"].apply_async((*args, list(handoff.tried)), queue=handoff.queue,
                                                       kwargsrepr=attempt_kwargsrepr(args[0]))
        except Exception as exc:
            _sending.error("could not hand a query of workflow %s on", args[0], exc=exc)
            return False
        log.info("a query of workflow %s: its code is missing here or does not match its history; handed on to "
                 "worker %s", args[0], handoff.worker)
        return True

    # --- eager activities ---------------------------------------------------------------------------
    def takes_eagerly(self, name: str, attempt: int, options: dict[str, Any]) -> bool:
        """Whether the task running in this thread would run this attempt itself, right after
        the append that dispatches it, instead of sending it through the broker (see `EagerSlot`): a first
        attempt of an activity this worker has the code for, with no queue of its own, no timeout and no
        heartbeat timeout (those are enforced per Celery task), while the slot is free and its budget lasts."""
        slot = self.slot
        if slot is None or not slot.free() or attempt != 1 or name not in registry.activities \
                or options.get("queue") or options.get("timeout") or options.get("heartbeat_timeout"):
            return False
        slot.picked += 1  # a batch's plans pick before any of them is recorded
        return True

    def dispatch(self, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                 options: dict[str, Any], eager: bool = False, countdown: float | None = None) -> None:
        """Send an attempt through the broker (or leave it in this thread's eager slot), as the Celery task
        of its activity call (`activity_task_id`): every attempt of one call is one task in Flower, its
        retries counted, as `Task.retry` keeps a task's id."""
        slot = self.slot
        if eager and slot is not None and slot.batch:
            # recorded with a lease deadline, which this process renews until the attempt ends or is sent
            self.eager_holds.add((workflow_id, seq, attempt))
            slot.queued.append((workflow_id, run_id, seq, attempt, name, input, options))
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
            _sending.error("could not send attempt %s of %s seq %s (dispatched again within %gs)", attempt,
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
        timeout = options.get("timeout")
        try:
            self.app.tasks["beluga.activity"].apply_async(
                args, queue=queue, shadow=f"activity:{name}", headers={SENT_HEADER: self.fleet.clock.now()},
                argsrepr=attempt_repr(workflow_id, run_id, seq, attempt), kwargsrepr=attempt_kwargsrepr(workflow_id),
                soft_time_limit=timeout, time_limit=(timeout * 1.5 + 5) if timeout else None, countdown=countdown,
                task_id=activity_task_id(run_id, seq), retries=attempt - 1)
            _sending.recovered()
        except Exception as exc:  # it waits for a worker: the scheduler sends it again past its deadline
            _sending.error("could not send attempt %s of %s seq %s (sent again within %gs)", attempt,
                           workflow_id, seq, self.settings.lease_seconds, exc=exc)

    def queue_length(self, queue: str) -> int | None:
        """How many messages wait in a Redis broker's `queue` (one LLEN), None for another broker or when
        the broker does not answer."""
        if not self.settings.broker_is_redis:
            return None
        try:
            if self._broker is None:
                self._broker = self.app.connection_for_write()
            return int(self._broker.default_channel.client.llen(queue))
        except Exception as exc:  # noqa: BLE001 - only tells whether to send an untaken attempt again
            log.debug("could not read the length of queue %s: %s", queue, exc)
            return None

    def _known_activities(self) -> set[str]:
        try:
            return self.fleet.known_activities()
        except TRANSIENT:
            return {*registry.activities}  # only for a warning: do not let it stop the dispatch

    def start_child(self, c: StartChild | None, link: dict[str, Any] | None, queue: str | None,
                    *, continue_from: Any = None, input: Any = None) -> None:
        from beluga.core.errors import WorkflowAlreadyStarted

        now = self.fleet.clock.now()
        if continue_from is not None:
            state = new_run_state(continue_from.workflow_type, continue_from.workflow_id, input, None, queue,
                                  now, parent=continue_from.parent, continued_from=continue_from.run_id)
            try:
                on_primary(self.store.create, state, replace_run_id=continue_from.run_id)
            except WorkflowAlreadyStarted:  # its backup (or another coordinator) created it first
                log.info("workflow %s: the run after %s exists already", continue_from.workflow_id,
                         continue_from.run_id)
                return
        else:
            assert c is not None and link is not None
            state = new_run_state(c.workflow_type, c.workflow_id, c.input, None, queue, now, parent=link)
            try:
                on_primary(self.store.create, state)
            except WorkflowAlreadyStarted as exc:
                existing = self.store.load_summary(c.workflow_id)
                if existing is not None and existing.parent == link:  # created by an earlier try of this
                    self.fleet.push(c.workflow_id, messages.encode(messages.Start()))
                    self.wake(c.workflow_id, queue)
                    return
                self.fleet.push(link["workflow_id"], messages.encode(
                    ChildClosed(c.seq, False, to_failure(exc)), link["run_id"]))
                self.wake(link["workflow_id"], queue)
                return
        # found by the sweeper should the wake be lost
        self.fleet.push(state.workflow_id, messages.encode(messages.Start()))
        self.wake(state.workflow_id, queue)


_runtime_lock = threading.Lock()


def runtime(app: Celery) -> Runtime:
    """The app's runtime, one per process (a forked pool process inherits it; redis-py reconnects)."""
    rt = getattr(app, "_beluga_runtime", None)
    if rt is None:
        with _runtime_lock:
            rt = getattr(app, "_beluga_runtime", None)
            if rt is None:
                rt = Runtime(app, app.conf.beluga_settings)
                app._beluga_runtime = rt
    return rt

