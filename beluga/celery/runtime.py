"""The per-process state of a worker or client (`Runtime`), made of its parts: Redis connections
(`store`, `fleet`), what it sends (`sender`), what it holds (`holds`, `eager_holds`), the coordinator
and its cache, and a worker's scheduler; with what joins them (wake batches, children, the roster)."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery

from beluga.celery import messages, roster
from beluga.celery.attempts import attempt_kwargsrepr
from beluga.celery.coordinator import Coordinator, RunVanished
from beluga.celery.eager import EagerSlot, close_eager_slot, run_eager_slot
from beluga.celery.fleet import Fleet
from beluga.celery.holds import EagerHolds, Holds
from beluga.celery.queues import worker_queue
from beluga.celery.report import AttemptReport
from beluga.celery.scheduler import Scheduler
from beluga.celery.sender import Sender, sending
from beluga.celery.task_events import TaskEventOutbox
from beluga.core.definitions import registry
from beluga.core.failure import to_failure
from beluga.core.steps import ChildClosed, StartChild
from beluga.logs import get_logger
from beluga.runs import new_run_state, payload_checker
from beluga.settings import Settings
from beluga.stores.redis import RedisStore, on_primary

log = get_logger("beluga.tasks")
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
        # what this worker holds: the attempts whose messages its consumer took (`holds`) and those this
        # process runs eagerly, which no message carries (`eager_holds`)
        self.holds = Holds(self.fleet)
        self.task_events = TaskEventOutbox()  # the Celery task events of the attempts it runs eagerly
        self.eager_holds = EagerHolds(self.fleet, self.task_events)
        self._local = threading.local()  # the eager slot of the activity task running in this thread
        self.sender = Sender(app, settings, self.fleet, self.eager_holds, lambda: self.slot)
        self.coordinator = Coordinator(self.fleet, registry, dispatch=self.sender.dispatch, wake=self.sender.wake,
                                       start_child=self.start_child, check_payload=self.check,
                                       stuck_retry=settings.stuck_retry_seconds, eager=self.takes_eagerly,
                                       elsewhere=self.elsewhere, hand_on=self.sender.hand_on)
        self.worker: str | None = None  # this worker's Celery node name, once it is set up (None: a client)
        self._versions: dict[str, str] | None = None
        self.scheduler = Scheduler(self, app)  # started in a worker's main process once it is ready

    @property
    def slot(self) -> EagerSlot | None:
        """The eager slot of the task running in this thread (None: every attempt goes through the broker)."""
        return getattr(self._local, "slot", None)

    @slot.setter
    def slot(self, slot: EagerSlot | None) -> None:
        self._local.slot = slot

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
        self.sender.wake_shard(shard)

    def coordinate_here(self, workflow_id: str, report: AttemptReport | None = None) -> None:
        """Run the coordinator right here, saving a task hop: after an activity attempt (handing over
        its outcome), or at the start of a run by a client that has the code. If the run cannot be
        driven in this process, the coordinate task, which waits for a worker that can, takes over
        (an attempt's outcome is queued already)."""
        try:
            self.coordinator.run(workflow_id, report)
        except RunVanished:  # the report is queued already; the coordinate task takes it from here
            self.sender.wake(workflow_id, None)

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
            sending.error("could not hand a query of workflow %s on", args[0], exc=exc)
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
                    self.sender.wake(c.workflow_id, queue)
                    return
                self.fleet.push(link["workflow_id"], messages.encode(
                    ChildClosed(c.seq, False, to_failure(exc)), link["run_id"]))
                self.sender.wake(link["workflow_id"], queue)
                return
        # found by the sweeper should the wake be lost
        self.fleet.push(state.workflow_id, messages.encode(messages.Start()))
        self.sender.wake(state.workflow_id, queue)


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

