"""A fleet worker (`FleetWorker`): built once in a worker's main process as it starts (the bootstep
`app.FleetWorkerStep`), inherited by its pool's processes, and handed to what needs it: the tasks (see
`FleetTask`), the scheduler, the eager runner and the renewers. It is a process's fleet parts
(`FleetProcess`: connections, sender, coordinator) plus what only a worker has: what it holds (`holds`,
`eager_holds`), the eager slot of the task in each thread, its scheduler, and its place in the roster."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery, Task, signals

from beluga.celery import roster
from beluga.celery.async_attempts import AsyncAttempts
from beluga.celery.attempts import DUE, attempt_kwargsrepr, eta_on_local_clock
from beluga.celery.eager import EagerSlot, close_eager_slot, run_eager_slot
from beluga.celery.foreign import refuse_foreign
from beluga.celery.holds import EagerHolds, Holds
from beluga.celery.outages import TRANSIENT
from beluga.celery.process import FleetProcess
from beluga.celery.queues import activity_queue, worker_queue
from beluga.celery.report import UNTIL
from beluga.celery.scheduler import Scheduler
from beluga.celery.sender import sending
from beluga.celery.task_events import TaskEventOutbox
from beluga.core.definitions import registry
from beluga.logs import get_logger
from beluga.settings import Settings

log = get_logger("beluga.tasks")
WAKE_BATCH = 100  # runs a wake task takes from its shard's wake set at a time
WAKE_LINGER = 0.002  # a wake task that found its shard's wake set empty looks once more after this long
# (short: a run woken meanwhile waits for it, as a signal's next activity does)


class FleetWorker(FleetProcess):
    """One worker's fleet parts, `name` its Celery node name. Its Celery signal receivers (set-up, ready,
    shutdown, a message taken) are its own methods, connected as it is built."""

    def __init__(self, app: Celery, settings: Settings, name: str) -> None:
        super().__init__(app, settings)
        self.name = name
        # what this worker holds: the attempts whose messages its consumer took (`holds`) and those this
        # process runs eagerly, which no message carries (`eager_holds`)
        self.holds = Holds(self.fleet)
        self.task_events = TaskEventOutbox()  # the Celery task events of the attempts it runs eagerly
        self.eager_holds = EagerHolds(self.fleet, self.task_events)
        self.async_attempts = AsyncAttempts(self)  # its `async def` attempts, on an event loop per process
        self._local = threading.local()  # the eager slot of the activity task running in this thread
        self.scheduler = Scheduler(self, app)  # started in the worker's main process once it is ready
        for signal, receiver in ((signals.celeryd_after_setup, self._on_setup), (signals.worker_ready, self._on_ready),
                                 (signals.worker_shutdown, self._on_shutdown),
                                 (signals.worker_process_shutdown, self._on_process_shutdown),
                                 (signals.task_received, self._on_task_received)):
            signal.connect(receiver, weak=False)

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
                slot = EagerSlot(len(workflow_ids), holds=self.eager_holds) if eager > 0 else None
            self.slot = slot
            try:
                self.coordinator.run_many(workflow_ids)
            except BaseException:
                close_eager_slot(self, slot)
                raise
            run_eager_slot(self, slot)
        self.sender.wake_shard(shard)

    # --- its place in the roster (see roster) ----------------------------------------------------------
    def announce(self) -> None:
        """Say that this worker is alive, with its queue and its workflows' versions, for a lease (the
        scheduler renews it; a worker that dies is forgotten a lease later)."""
        record = roster.encode(roster.Announcement(self.name, worker_queue(self.settings, self.name),
                                                   self.versions()))
        self.fleet.announce_worker(self.name, record, self.settings.lease_seconds)

    def withdraw(self) -> None:
        """A clean shutdown: no run is handed on to this worker any more (best effort)."""
        try:
            self.fleet.withdraw_worker(self.name)
        except Exception as exc:  # noqa: BLE001 - its announcement expires within a lease anyway
            log.debug("could not withdraw worker %s: %s", self.name, exc)

    def hand_query_on(self, workflow_type: str, args: tuple[Any, ...], tried: tuple[str, ...]) -> bool:
        """Send a query this process cannot answer (`args`: the query task's) to a live worker that may:
        False when there is none (the caller replies with its error)."""
        handoff = self.elsewhere(workflow_type, tried)
        if handoff is None:
            return False
        try:
            self.sender.send("beluga.query", (*args, list(handoff.tried)), queue=handoff.queue,
                             kwargsrepr=attempt_kwargsrepr(args[0]))
        except Exception as exc:
            sending.error("could not hand a query of workflow %s on", args[0], exc=exc)
            return False
        log.info("a query of workflow %s: its code is missing here or does not match its history; handed on to "
                 "worker %s", args[0], handoff.worker)
        return True

    # --- its Celery signals -----------------------------------------------------------------------------
    def _on_setup(self, sender: Any = None, instance: Any = None, **_: Any) -> None:
        """The worker is set up (`-Q` applied), before it takes any message: it consumes Beluga's queues
        and announces its code."""
        if getattr(instance, "app", None) is not self.app:
            return
        if getattr(self.app.conf, "beluga_installed", False):  # a team's own app: consume Beluga's queue as well
            self.app.amqp.queues.select_add(self.settings.default_queue)
        for name in sorted(registry.activities):
            self.app.amqp.queues.select_add(activity_queue(self.settings, name))
        self.app.amqp.queues.select_add(worker_queue(self.settings, self.name))
        try:
            self.fleet.publish_names(sorted(registry.workflows), sorted(registry.activities))
            self.announce()  # before the worker takes anything: a worker lacking some code hands runs here
        except TRANSIENT as exc:  # the scheduler announces them once Redis answers
            log.warning("could not announce this worker's workflows and activities yet: %s", exc)

    def _on_ready(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app:
            return
        try:  # runs that Beluga 0.1.0 listed in its global index stay listed (see RedisStore.adopt_listing)
            self.store.adopt_listing()
        except TRANSIENT as exc:
            log.warning("could not look for runs listed by Beluga 0.1.0 (the next start will): %s", exc)
        self.scheduler.start()

    def _on_process_shutdown(self, **_: Any) -> None:
        """A pool process stops (a warm shutdown): its async attempts in flight end first."""
        self.async_attempts.drain()

    def _on_shutdown(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app:
            return
        self.async_attempts.drain()  # the solo and threads pools run them in this process
        self.scheduler.stop()
        self.withdraw()

    def _on_task_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        """Renew the deadline of an activity attempt whose message this worker just took, unless it is far
        enough ahead (see `Holds`), so that a worker that dies holding it is noticed within the lease; and
        put a Celery retry's ETA, given on the fleet's clock, on this worker's (see `eta_on_local_clock`)."""
        if request is None or request.type != "beluga.activity" or getattr(sender, "app", None) is not self.app:
            return  # (.name is the Flower shadow name)
        args = request.args
        try:
            attempt = (args[0], int(args[2]), int(args[3]))
            until = (args[6] or {}).get(UNTIL)
            due = (args[6] or {}).get(DUE)
        except Exception:  # a malformed message is rejected by the task itself; never break the consumer
            return
        self.holds.note(attempt, until if isinstance(until, float) else None)
        if due is not None:
            eta_on_local_clock(request, self.fleet.clock)


class FleetTask(Task):
    """The base of the fleet's tasks (see tasks.py): each runs with the worker its process started with."""

    @property
    def worker(self) -> FleetWorker:
        worker = getattr(self.app, "beluga_process", None)
        if not isinstance(worker, FleetWorker):
            from beluga.core.errors import ConfigurationError

            raise ConfigurationError(f"{self.name} runs in a Beluga worker (celery worker with Beluga's app or "
                                     "one beluga.celery.install put Beluga on), which builds its fleet parts as it "
                                     "starts")
        return worker

    def refuse_foreign(self) -> None:
        """Hand a message of another fleet back to its queue and end this task (see foreign.py)."""
        refuse_foreign(self, self.worker.fleet)
