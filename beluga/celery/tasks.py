"""The Celery tasks of the fleet: `beluga.wake` (coordinates the woken runs of one shard),
`beluga.coordinate` (one run), `beluga.activity` (one task per attempt, shown in Flower as
`activity:<name>`), and `beluga.query`."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from beluga import codec
from beluga.activity import ActivityInfo, run_with_info
from beluga.celery import messages, observe, outcome, task_events
from beluga.celery.app import activity_queue
from beluga.celery.coordinator import CARRIED, SENT_AT, Coordinator, Stuck
from beluga.celery.fleet import Fleet
from beluga.celery.outages import TRANSIENT, Quiet, retry_transient
from beluga.celery.task_events import EagerTaskEvents
from beluga.core.definitions import effective_option, effective_retry, registry
from beluga.core.driver import read_only
from beluga.core.errors import ConfigurationError, SerializationError
from beluga.core.failure import to_failure
from beluga.core.steps import ActivityOutcome, ChildClosed, StartChild
from beluga.executors._runs import new_run_state, payload_checker
from beluga.logs import get_logger
from beluga.settings import Settings
from beluga.stores.redis import RedisStore, on_primary

log = get_logger("beluga.tasks")
# Through an outage each process logs a topic's first error, then a line every ten seconds at most.
_sending = Quiet(log, "sending tasks to the broker")
_reporting = Quiet(log, "reporting activity attempts")
_coordinating = Quiet(log, "coordinating runs")
_renewing = Quiet(log, "renewing activity leases")
CELERY_RETRY_LIMIT = 300.0  # longer backoffs go through the durable timer set, not broker countdowns
WAKE_BATCH = 100  # runs a wake task takes from its shard's wake set at a time
WAKE_EAGER_SECONDS = 0.5  # how long a wake batch runs its runs' next activities itself before sending the rest
WAKE_LINGER = 0.002  # a wake task that found its shard's wake set empty looks once more after this long
# (short: a run woken meanwhile waits for it, as a signal's next activity does)


class Runtime:
    """Per-process state of a worker or client: Redis connections, the coordinator and its cache."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.store = RedisStore(settings.history_url, prefix=settings.key_prefix,
                                append_replicas=settings.append_replicas,
                                append_replicas_timeout=settings.append_replicas_timeout)
        self.fleet = Fleet(self.store, settings.lease_seconds, undelivered_lapse=settings.broker_is_redis)
        self.check = payload_checker(settings.max_payload_bytes)
        self.coordinator = Coordinator(self.fleet, registry, dispatch=self.dispatch, wake=self.wake,
                                       start_child=self.start_child, check_payload=self.check,
                                       stuck_retry=settings.stuck_retry_seconds, eager=self.takes_eagerly)
        # attempts this process runs eagerly (no message: no worker main process renews their deadlines)
        self.in_flight: set[tuple[str, int, int]] = set()
        self._renewer: threading.Thread | None = None
        self.holds = Holds(self.fleet)
        self._local = threading.local()  # the eager slot of the activity task running in this thread

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
            self._local.slot = slot
            try:
                self.coordinator.run_many(workflow_ids)
            except BaseException:
                close_eager_slot(self, slot)
                raise
            run_eager_slot(self, slot)
        self.wake_shard(shard)

    def coordinate_here(self, workflow_id: str, report: tuple[Any, ...] | None = None) -> None:
        """Run the coordinator right here, saving a task hop: after an activity attempt (handing over
        its outcome), or at the start of a run by a client that has the code. If the run cannot be
        driven in this process, the coordinate task, which waits for a worker that can, takes over
        (an attempt's outcome is queued already)."""
        try:
            self.coordinator.run(workflow_id, report)
        except Stuck:  # the report is queued already; the coordinate task takes it from here
            self.wake(workflow_id, None)

    # --- eager activities ---------------------------------------------------------------------------
    def takes_eagerly(self, name: str, attempt: int, options: dict[str, Any]) -> bool:
        """Whether the task running in this thread would run this attempt itself, right after
        the append that dispatches it, instead of sending it through the broker (see `EagerSlot`): a first
        attempt of an activity this worker has the code for, with no queue of its own, no timeout and no
        heartbeat timeout (those are enforced per Celery task), while the slot is free and its budget lasts."""
        slot: EagerSlot | None = getattr(self._local, "slot", None)
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
        slot: EagerSlot | None = getattr(self._local, "slot", None)
        if eager and slot is not None and slot.batch:
            # recorded with a lease deadline, which this process renews until the attempt ends or is sent
            self.in_flight.add((workflow_id, seq, attempt))
            self.ensure_renewer()
            slot.queued.append((workflow_id, run_id, seq, attempt, name, input, options))
            return
        if eager and slot is not None and slot.next is None:
            slot.next = (workflow_id, run_id, seq, attempt, name, input, options)
            return
        timeout = options.get("timeout")
        queue = options.get("queue") or activity_queue(self.settings, name)
        if name not in self._known_activities():
            log.warning("no worker has announced activity %r: workflow %s waits in queue %s until one that "
                        "imports its module joins", name, workflow_id, queue)
        try:
            self.app.tasks["beluga.activity"].apply_async(
                (workflow_id, run_id, seq, attempt, name, input, options),
                queue=queue, shadow=f"activity:{name}",
                argsrepr=attempt_repr(workflow_id, run_id, seq, attempt), kwargsrepr=attempt_kwargsrepr(workflow_id),
                soft_time_limit=timeout, time_limit=(timeout * 1.5 + 5) if timeout else None, countdown=countdown,
                task_id=activity_task_id(run_id, seq), retries=attempt - 1)
            _sending.recovered()
        except Exception as exc:  # its dispatch record has it sent again once its deadline passes
            _sending.error("could not send attempt %s of %s seq %s (sent again within %gs)", attempt,
                           workflow_id, seq, self.settings.lease_seconds, exc=exc)

    def _known_activities(self) -> set[str]:
        try:
            return self.fleet.known_activities()
        except TRANSIENT:
            return {*registry.activities}  # only for a warning: do not let it stop the dispatch

    def start_child(self, c: StartChild | None, link: dict[str, Any] | None, queue: str | None,
                    *, continue_from: Any = None, input: Any = None) -> None:
        from beluga.core.errors import WorkflowAlreadyStarted

        now = time.time()
        if continue_from is not None:
            state = new_run_state(continue_from.workflow_type, continue_from.workflow_id, input, None, queue,
                                  now, parent=continue_from.parent, continued_from=continue_from.run_id)
            on_primary(self.store.create, state, replace_run_id=continue_from.run_id)
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

    def renew_forever(self) -> None:
        """Renew the deadlines of the attempts this process runs eagerly (a worker's main process renews
        those whose messages it holds)."""
        ok = True
        while True:  # after a failure, try again soon: the lease may be about to lapse
            time.sleep(max(0.5, self.settings.lease_seconds / 3) if ok else 0.25)
            task_events.flush()  # the start of an eager attempt still running shows in Flower
            try:
                self.fleet.hold(list(self.in_flight))
                ok = True
                _renewing.recovered()
            except Exception as exc:
                ok = False
                _renewing.error("could not renew activity leases", exc=exc)

    def ensure_renewer(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self.renew_forever, name="beluga-lease", daemon=True)
            self._renewer.start()


class EagerSlot:
    """A task's budget of eager steps. When an activity task's report (or a coordinate task's step, such
    as a run's start) leads to a new attempt that this worker can run (see `Runtime.takes_eagerly`), the
    append that dispatches it gives it a lease deadline, the coordinator leaves it here instead of
    sending it through the broker, and the task runs it next, in the same process; its report may leave
    the next one. `limit` eager attempts per task at most: then the run goes back through the broker,
    and the process to whatever waits there."""

    def __init__(self, limit: int, batch: bool = False) -> None:
        self.limit = limit
        self.used = 0
        self.next: tuple[str, str, int, int, str, Any, dict[str, Any]] | None = None
        # A wake task's batch: each woken run may leave its next attempt (`limit` in all), run once the
        # whole batch is recorded, one after the other for WAKE_EAGER_SECONDS; what is left then is sent
        # through the broker. Their reports take no eager attempt after them.
        self.batch = batch
        self.picked = 0
        self.queued: list[tuple[str, str, int, int, str, Any, dict[str, Any]]] = []

    def free(self) -> bool:
        """Whether the slot takes one more attempt."""
        if self.batch:
            return self.picked < self.limit
        return self.next is None and self.used < self.limit


class Holds:
    """The attempts whose messages the worker's consumer just took: their deadlines are renewed (moved
    to a lease from now) from a thread of their own, in batches of one command, so the consumer loop
    never waits on Redis and a worker that dies holding a message is noticed within the lease. The
    scheduler renews everything the worker still holds, every second or so (`held_attempts`); so a
    message whose deadline (as its dispatch recorded it, `until`) is further ahead than two of those
    rounds, the common case of a message taken soon after it was sent, needs no renewal of its own:
    its deadline is already at most a lease from its dispatch."""

    def __init__(self, fleet: Fleet, interval: float = 0.02) -> None:
        self._fleet = fleet
        self._interval = interval
        self._margin = 2 * min(1.0, fleet.lease_seconds / 3) + 0.5  # the scheduler's round, twice, and some
        self._quiet = Quiet(log, "renewing activity deadlines")
        self._pending: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, attempt: tuple[str, int, int], until: float | None = None) -> None:
        if until is not None and until - time.time() > self._margin:
            return
        with self._lock:
            self._pending.append(attempt)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._flush_forever, name="beluga-holds", daemon=True)
                self._thread.start()
        self._wake.set()

    def _flush_forever(self) -> None:
        backoff = self._interval
        while True:
            self._wake.wait()
            time.sleep(backoff)  # let a burst of messages share one round trip
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                self._fleet.hold(batch)
                backoff = self._interval
                self._quiet.recovered()
            except Exception as exc:
                # Kept and tried again (renewing twice is harmless); meanwhile the scheduler renews what
                # the worker holds, and the dispatch deadlines still stand.
                self._quiet.error("could not renew %d activity deadlines", len(batch), exc=exc)
                with self._lock:
                    self._pending[:0] = batch[-10000:]
                backoff = min(1.0, backoff * 4)
                self._wake.set()


def attempt_repr(workflow_id: str, run_id: str, seq: int, attempt: int) -> str:
    """How an activity task's arguments show in Flower and in the broker's message headers, where the
    scheduler looks for an attempt that no worker has taken yet (see `queued`)."""
    return f"({workflow_id!r}, {run_id!r}, seq={seq}, attempt={attempt})"


def activity_task_id(run_id: str, seq: int) -> str:
    """The Celery task id of every attempt of the activity call `seq` of run `run_id` (a name-based UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"beluga:{run_id}/{seq}"))


def attempt_kwargsrepr(workflow_id: str) -> str:
    """How a task's keyword arguments show in Flower: its workflow id, so that the search
    `kwargs:workflow_id=<id>` finds exactly that run's tasks (the tasks take no keyword arguments)."""
    return repr({"workflow_id": workflow_id})


def queued(rt: Runtime, queues: list[str]) -> Any:
    """A predicate for a Redis broker: does the attempt's message still wait in one of its `queues`?"""
    broker = rt.app.connection_for_write().default_channel.client

    def waiting(workflow_id: str, seq: int, attempt: int) -> bool:
        run_id, _ = rt.store.version(workflow_id)
        needle = json.dumps(attempt_repr(workflow_id, run_id or "", seq, attempt))[1:-1].encode()
        for queue in queues:
            for start in range(0, int(broker.llen(queue)), 1000):
                if any(needle in item for item in broker.lrange(queue, start, start + 999)):
                    return True
        return False

    return waiting


def run_attempt(rt: Runtime, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int, input: Any,
                options: dict[str, Any], details: Any, heartbeat_timeout: float | None, celery_retries: bool = True
                ) -> tuple[dict[str, Any], float | None]:
    """Run one claimed attempt; returns the inbox message reporting it and the retry delay. A retry up to
    CELERY_RETRY_LIMIT away is the task's own Celery retry when `celery_retries`, else a durable timer."""
    fleet = rt.fleet

    def beat(details: Any) -> None:
        rt.check(details)
        try:
            fleet.heartbeat(workflow_id, seq, attempt, heartbeat_timeout, details)
            _renewing.recovered()
        except TRANSIENT as exc:  # not the activity's problem: its lease lapses if Redis stays away too long
            _renewing.error("could not record a heartbeat of attempt %s of %s seq %s", attempt, workflow_id, seq,
                            exc=exc)

    info = ActivityInfo(workflow_id, run_id, defn.name, seq, attempt, details, _beat=beat)
    try:
        result = run_with_info(info, lambda: defn.call(input))
        rt.check(result)
        return messages.encode(ActivityOutcome(seq, attempt, True, result), run_id), None
    except BaseException as exc:
        if isinstance(exc, SoftTimeLimitExceeded):
            exc = TimeoutError(f"activity {defn.name!r} attempt {attempt} ran past its "
                               f"{options.get('timeout')}s timeout")
        failure = to_failure(exc)
        outcome.note_failure(exc)  # raised by the task once the attempt is reported (outcome.settle)
        if isinstance(exc, (ConfigurationError, SerializationError)):
            failure["non_retryable"] = True
        delay = effective_retry(options, defn).next_delay(attempt, failure, random.random())
        by_celery = celery_retries and delay is not None and delay <= CELERY_RETRY_LIMIT
        return messages.encode(ActivityOutcome(seq, attempt, False, failure, delay, retried_by_sender=by_celery),
                               run_id), delay


def report_attempt(rt: Runtime, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int, input: Any,
                   options: dict[str, Any], details: Any, heartbeat_timeout: float | None, heartbeat: bool,
                   celery_retries: bool = True) -> tuple[dict[str, Any], bool, float | None] | None:
    """Run a started attempt and report it, handing the report to the coordinator right here. Returns
    (the report's message, whether Celery is to send the next attempt, after how long), or None when the
    attempt was given up (Redis stayed away past the lease: its deadline lapses and the scheduler
    dispatches it again)."""
    budget = rt.settings.lease_seconds  # how long Redis may be away before this attempt is given up
    try:
        message, next_delay = run_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options,
                                          details, heartbeat_timeout, celery_retries)
        celery_retry = message.get("celery_retry", False)
        report = (seq, attempt, message, attempt + 1 if celery_retry else None, heartbeat, options.get(SENT_AT),
                  options.get(CARRIED))
        # Redis away: keep trying (the attempt's deadline is renewed meanwhile); reporting twice is
        # harmless, a stale report is ignored. Past the budget the attempt is given up: its deadline
        # lapses and any live worker's scheduler dispatches a new attempt.
        retry_transient(lambda: rt.coordinate_here(workflow_id, report), budget,
                        on_error=lambda exc: _reporting.error("could not report attempt %s of %s seq %s; "
                                                              "trying again", attempt, workflow_id, seq, exc=exc))
        _reporting.recovered()
    except Exception as exc:
        _reporting.error("giving up reporting attempt %s of %s seq %s: it is dispatched again within %gs",
                         attempt, workflow_id, seq, 2 * budget, exc=exc)
        return None
    return message, celery_retry, next_delay


def run_eagerly(rt: Runtime, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                options: dict[str, Any]) -> None:
    """Run an attempt that the append before recorded as dispatched, with a lease deadline, and that no
    message carries: this process renews its deadline while it runs, so that if it dies the scheduler
    dispatches the attempt again within the lease, as for any lost attempt."""
    defn = registry.activities[name]
    key = (workflow_id, seq, attempt)
    rt.in_flight.add(key)
    rt.ensure_renewer()
    # observers see it as they see any attempt: Flower's task events, logs, span and metrics
    events = EagerTaskEvents(rt.app, name, activity_task_id(run_id, seq),
                             attempt_repr(workflow_id, run_id, seq, attempt), attempt_kwargsrepr(workflow_id))
    events.received_and_started()
    observe.attempt_began(events.task_id, workflow_id, run_id, seq, attempt, name, options, time.time())
    reported = None
    try:
        # its retry waits in a durable timer, not in a Celery countdown message: that message would reach
        # Flower (as received) in a race with this attempt's end (retried)
        reported = report_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options, None, None, False,
                                  celery_retries=False)
    finally:
        rt.in_flight.discard(key)
        _observe_eager_end(events, name, reported)


def _observe_eager_end(events: EagerTaskEvents, name: str,
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


def run_eager_slot(rt: Runtime, slot: EagerSlot | None) -> None:
    """Run the attempts left in the task's eager slot, one after the other, each possibly leaving the
    next; then close the slot."""
    try:
        if slot is not None and slot.batch and slot.queued:
            rt._local.slot = None  # the reports of a batch's attempts send what follows through the broker
            until = time.monotonic() + WAKE_EAGER_SECONDS
            with task_events.batched():
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


def close_eager_slot(rt: Runtime, slot: EagerSlot | None) -> None:
    """No more eager attempts in this task; one still left in the slot goes through the broker."""
    rt._local.slot = None
    if slot is not None and slot.next is not None:
        job, slot.next = slot.next, None
        rt.dispatch(*job)
    if slot is not None and slot.queued:
        jobs, slot.queued = slot.queued, []
        held = [(wid, seq, attempt) for wid, _, seq, attempt, *_ in jobs]
        rt.in_flight.difference_update(held)
        try:  # no longer renewed here: the time allowed for a worker to take the message, as when sent
            rt.fleet.hold(held, until=rt.fleet.dispatch_deadline())
        except Exception as exc:  # noqa: BLE001 - Redis away: sent all the same (the broker queue is looked into)
            log.debug("could not move the deadlines of attempts sent after a wake batch: %s", exc)
        for job in jobs:
            rt.dispatch(*job)


def _eager_allowed(task: Any) -> bool:
    """Whether this activity task may run the attempts its reports lead to (BELUGA_EAGER_ACTIVITIES > 0,
    in a worker): not when Celery limits its rate or its run time (both apply to the whole task)."""
    if runtime(task.app).settings.eager_activities <= 0:
        return False
    if task.request.is_eager or task.rate_limit or any(task.request.timelimit or ()):
        return False
    conf = task.app.conf
    return not (task.time_limit or task.soft_time_limit or conf.task_time_limit or conf.task_soft_time_limit)


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


def bind(app: Celery) -> None:
    """Register the fleet's tasks on `app`."""

    @app.task(name="beluga.coordinate", shared=False, bind=True, acks_late=True, max_retries=None)
    def coordinate(self: Any, workflow_id: str) -> None:
        rt = runtime(app)
        slot = EagerSlot(rt.settings.eager_activities) if _eager_allowed(self) else None
        rt._local.slot = slot  # the run's first activity (or the next after a signal) may start right here
        try:
            rt.coordinator.run(workflow_id)
            _coordinating.recovered()
        except Stuck as exc:  # the run vanished under the coordinator (deleted meanwhile)
            log.warning("%s", exc)
        except TRANSIENT as exc:  # its inbox keeps the messages; the sweep wakes the run again
            _coordinating.error("could not coordinate workflow %s (the sweep will wake it again)", workflow_id,
                                exc=exc)
        except BaseException:
            close_eager_slot(rt, slot)
            raise
        run_eager_slot(rt, slot)

    @app.task(name="beluga.wake", shared=False, bind=True, acks_late=True, max_retries=None)
    def wake(self: Any, shard: int) -> None:
        rt = runtime(app)
        try:
            rt.wake_batch(int(shard), eager=rt.settings.eager_activities if _eager_allowed(self) else 0)
            _coordinating.recovered()
        except TRANSIENT as exc:  # the runs' inboxes keep their messages; the sweep wakes them again
            _coordinating.error("could not coordinate the runs woken in shard %s (the sweep will wake them "
                                "again)", shard, exc=exc)

    @app.task(name="beluga.activity", shared=False, bind=True, acks_late=True, reject_on_worker_lost=True,
              max_retries=None)
    def activity(self: Any, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                 options: dict[str, Any]) -> None:
        rt = runtime(app)
        fleet = rt.fleet
        defn = registry.activities.get(name)
        if defn is None:
            log.error("activity %r is not registered in this worker (BELUGA_IMPORTS); workflow %s waits",
                      name, workflow_id)
            raise self.retry(countdown=2)
        heartbeat_timeout = effective_option(options, defn, "heartbeat_timeout")
        redelivered = (self.request.delivery_info or {}).get("redelivered")
        budget = rt.settings.lease_seconds  # how long Redis may be away before this attempt is given up
        if attempt == 1 and not redelivered and not self.request.retries and heartbeat_timeout is None:
            # The first delivery of a first attempt cannot be stale, and needs no claim: its deadline is
            # renewed by this worker's main process while it holds the message (see Holds).
            details = None
        else:
            try:
                current, details = retry_transient(
                    lambda: fleet.claim(workflow_id, seq, attempt, run_id, heartbeat_timeout), budget,
                    on_error=lambda exc: _reporting.error("could not start attempt %s of %s seq %s; trying "
                                                          "again", attempt, workflow_id, seq, exc=exc))
            except TRANSIENT as exc:  # its deadline lapses once this worker lets the message go
                _reporting.error("giving up starting attempt %s of %s seq %s: it is dispatched again", attempt,
                                 workflow_id, seq, exc=exc)
                return
            if not current:
                log.info("skipping stale attempt %s of %s seq %s", attempt, workflow_id, seq)
                return
        # An eager slot: the attempts this task's reports lead to may run right here (see EagerSlot)
        slot = EagerSlot(rt.settings.eager_activities) if _eager_allowed(self) else None
        rt._local.slot = slot
        try:
            reported = report_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options, details,
                                      heartbeat_timeout, heartbeat_timeout is not None)
            if reported is not None:
                message, celery_retry, next_delay = reported
                if celery_retry:  # a failed publish rejects the message; the next attempt's dispatch
                    # record remains
                    raise self.retry(args=(workflow_id, run_id, seq, attempt + 1, name, input, options),
                                     countdown=next_delay,
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

    @app.task(name="beluga.query", shared=False, bind=True)
    def query(self: Any, workflow_id: str, name: str, args: list[Any], reply_to: str) -> None:
        rt = runtime(app)
        try:
            state = rt.store.load(workflow_id)
            if state is None:
                raise ConfigurationError(f"no workflow with id {workflow_id!r}")
            instance = read_only(state, registry.workflow, check_payload=rt.check)
            value = instance.query(name, *args)
            rt.check(value)
            rt.fleet.reply(reply_to, {"ok": True, "value": value})
        except Exception as exc:
            rt.fleet.reply(reply_to, {"ok": False, "error": to_failure(exc)})


__all__ = ["bind", "runtime", "codec"]
