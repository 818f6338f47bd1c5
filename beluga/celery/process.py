"""What every process of the fleet has, a client's as well as a worker's (`FleetProcess`): its Redis
connections (`store`, `fleet`), what it sends (`sender`), the coordinator, which worker has which code
(the roster), and how a run's children are started. A worker's own parts are in worker.py
(`FleetWorker`); a client builds only these (see client.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery

from beluga.celery import messages, roster
from beluga.celery.coordinator import Coordinator, RunVanished
from beluga.celery.fleet import Fleet
from beluga.celery.report import AttemptReport
from beluga.celery.sender import Sender
from beluga.core.definitions import registry
from beluga.core.failure import to_failure
from beluga.core.retry import seconds
from beluga.core.steps import ChildClosed, StartChild, TimedOut
from beluga.logs import get_logger
from beluga.runs import new_run_state, payload_checker
from beluga.settings import Settings
from beluga.stores.redis import RedisStore, connect, on_primary

if TYPE_CHECKING:
    from beluga.celery.eager import EagerSlot
    from beluga.celery.fleet_scripts import PushReply
    from beluga.executors.base import WorkflowOptions

log = get_logger("beluga.tasks")


class FleetProcess:
    """The fleet parts of a process: built once by whoever owns the process (a worker as it starts, see
    `FleetWorker`; a client for its app, see `CeleryExecutor`) and handed to what needs them."""

    name: str | None = None  # a worker's Celery node name (its own queue, how the roster knows it); a client: None

    def __init__(self, app: Celery, settings: Settings, connect: Callable[[str, float, float], Any] = connect) -> None:
        """`connect(url, socket_timeout, connect_timeout)` makes every Redis client of the process (the
        async client's: a bridged asyncio one, see beluga/celery/aio.py)."""
        self.app = app
        self.settings = settings
        self.connect = connect
        # a WAIT for replicas is one reply that may take append_replicas_timeout
        socket_timeout = max(settings.redis_socket_timeout,
                             settings.append_replicas_timeout + 1.0 if settings.append_replicas else 0.0)
        self.store = RedisStore(client=connect(settings.history_url, socket_timeout, settings.redis_connect_timeout),
                                prefix=settings.key_prefix, append_replicas=settings.append_replicas,
                                append_replicas_timeout=settings.append_replicas_timeout)
        self.fleet = Fleet(self.store, settings.lease_seconds, undelivered_lapse=settings.broker_is_redis)
        self.check = payload_checker(settings.max_payload_bytes)
        self.sender = Sender(app, settings, self.fleet, lambda: self.slot)
        self.coordinator = Coordinator(self.fleet, registry, dispatch=self.sender.dispatch, wake=self.sender.wake,
                                       start_child=self.start_child, check_payload=self.check,
                                       stuck_retry=settings.stuck_retry_seconds, eager=self.takes_eagerly,
                                       elsewhere=self.elsewhere, hand_on=self.sender.hand_on)
        self.coordinator.permits.aging = settings.priority_aging
        self._versions: dict[str, str] | None = None

    @property
    def slot(self) -> EagerSlot | None:
        """The eager slot of the task running in this thread: a client has none (every attempt goes through
        the broker); a worker's tasks have one (see `FleetWorker`)."""
        return None

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

    def elsewhere(self, workflow_type: str, tried: tuple[str, ...]) -> roster.Handoff | None:
        """A live worker that may drive a run of `workflow_type` this process cannot (see `roster.pick`)."""
        live = [a for name, raw in self.fleet.live_workers() if (a := roster.decode(name, raw)) is not None]
        return roster.pick(workflow_type, self.versions().get(workflow_type, roster.MISSING), tried, live,
                           self.name)

    # --- eager activities ---------------------------------------------------------------------------
    def takes_eagerly(self, name: str, attempt: int, options: dict[str, Any]) -> bool:
        """Whether the task running in this thread would run this attempt itself, right after
        the append that dispatches it, instead of sending it through the broker (see `EagerSlot`): a first
        attempt of an activity this worker has the code for, with no queue of its own, no timeout and no
        heartbeat timeout (those are enforced per Celery task), while the slot is free and its budget lasts."""
        slot = self.slot
        if slot is None or not slot.free() or attempt != 1 or name not in registry.activities \
                or options.get("queue") or options.get("timeout") or options.get("heartbeat_timeout") \
                or (slot.async_only and not registry.activities[name].is_async):
            return False
        slot.picked += 1  # a batch's plans pick before any of them is recorded
        return True

    def start_child(self, c: StartChild | None, link: dict[str, Any] | None, queue: str | None,
                    *, continue_from: Any = None, input: Any = None) -> None:
        from beluga.core.errors import WorkflowAlreadyStarted

        now = self.fleet.clock.now()
        if continue_from is not None:
            state = new_run_state(continue_from.workflow_type, continue_from.workflow_id, input, None, queue,
                                  now, parent=continue_from.parent, continued_from=continue_from.run_id,
                                  search_attributes=continue_from.search_attributes, memo=continue_from.memo)
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

    def begin_run(self, name: str, workflow_id: str, options: WorkflowOptions, request_id: str | None,
                  signal: dict[str, Any] | None = None) -> tuple[str, PushReply | None]:
        """Store a new run of `name` in one atomic step: listed, its start message queued and its execution
        timeout armed (the same timer on each retry of one request); with `signal` (signal-with-start), the
        open run of the id is signalled instead if there is one. Returns the run id (the one this request made
        before, on a retry) and how the signal went to an open run (None: a run was created). Waking it is
        the caller's part."""
        timeout = seconds(options.timeout)
        now = self.fleet.clock.now()  # the history Redis's clock, as every worker's
        state = new_run_state(name, workflow_id, options.input, timeout, options.queue, now,
                              headers=options.headers, identity=options.identity,
                              search_attributes=options.search_attributes, memo=options.memo,
                              priority=options.priority)
        armed = None if timeout is None else (now + timeout, messages.encode(TimedOut(), state.run_id))
        if signal is None:
            return self.fleet.start_run(state, request_id, armed), None
        return self.fleet.signal_with_start(state, signal, request_id, armed)
