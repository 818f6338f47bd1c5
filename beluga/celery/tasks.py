"""The Celery tasks of the fleet: `beluga.wake` (coordinates the woken runs of one shard),
`beluga.coordinate` (one run), `beluga.activity` (one task per attempt, shown in Flower as
`activity:<name>`), and `beluga.query`."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from beluga import codec
from beluga.activity import ActivityInfo, run_with_info
from beluga.celery import messages, outcome
from beluga.celery.app import activity_queue
from beluga.celery.coordinator import Coordinator, Stuck
from beluga.celery.fleet import Fleet
from beluga.celery.outages import TRANSIENT, Quiet, retry_transient
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


class Runtime:
    """Per-process state of a worker or client: Redis connections, the coordinator and its cache."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.store = RedisStore(settings.history_url, prefix=settings.key_prefix,
                                append_replicas=settings.append_replicas,
                                append_replicas_timeout=settings.append_replicas_timeout)
        self.fleet = Fleet(self.store, settings.lease_seconds)
        self.check = payload_checker(settings.max_payload_bytes)
        self.coordinator = Coordinator(self.fleet, registry, dispatch=self.dispatch, wake=self.wake,
                                       start_child=self.start_child, check_payload=self.check,
                                       stuck_retry=settings.stuck_retry_seconds)
        self.in_flight: set[tuple[str, int, int]] = set()
        self._renewer: threading.Thread | None = None
        self.receipts = Receipts(self.fleet)

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

    def wake_batch(self, shard: int, rounds: int = 10) -> None:
        """The shard's wake task: coordinate the runs in its wake set, WAKE_BATCH at a time, until the
        set is empty (which releases the shard's waking lease). After `rounds` batches, a new task takes
        over, so that other work queued meanwhile gets its turn."""
        for _ in range(rounds):
            workflow_ids = self.fleet.take_wakes(shard, WAKE_BATCH)
            if not workflow_ids:
                return
            self.coordinator.run_many(workflow_ids)
        self.wake_shard(shard)

    def coordinate_here(self, workflow_id: str,
                        report: tuple[int, int, dict[str, Any], int | None] | None = None) -> None:
        """Run the coordinator right here, saving a task hop: after an activity attempt (handing over
        its outcome), or at the start of a run by a client that has the code. If the run cannot be
        driven in this process, the coordinate task, which waits for a worker that can, takes over
        (an attempt's outcome is queued already)."""
        try:
            self.coordinator.run(workflow_id, report)
        except Stuck:  # the report is queued already; the coordinate task takes it from here
            self.wake(workflow_id, None)

    def dispatch(self, workflow_id: str, run_id: str, seq: int, attempt: int, name: str, input: Any,
                 options: dict[str, Any]) -> None:
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
                soft_time_limit=timeout, time_limit=(timeout * 1.5 + 5) if timeout else None)
            _sending.recovered()
        except Exception as exc:  # its dispatch record has it sent again once its deadline passes
            _sending.error("could not send attempt %s of %s seq %s (sent again within %gs)", attempt,
                           workflow_id, seq, 2 * self.settings.lease_seconds, exc=exc)

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
        ok = True
        while True:  # after a failure, try again soon: the lease may be about to lapse
            time.sleep(max(0.5, self.settings.lease_seconds / 3) if ok else 0.25)
            try:
                self.fleet.renew(list(self.in_flight))
                ok = True
                _renewing.recovered()
            except Exception as exc:
                ok = False
                _renewing.error("could not renew activity leases", exc=exc)

    def ensure_renewer(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self.renew_forever, name="beluga-lease", daemon=True)
            self._renewer.start()


class Receipts:
    """Activity receipts noted by the worker's consumer, written to Redis from a thread of their own
    in batches, so the consumer loop never waits on Redis for them."""

    def __init__(self, fleet: Fleet, interval: float = 0.02) -> None:
        self._fleet = fleet
        self._interval = interval
        self._quiet = Quiet(log, "recording activity receipts")
        self._pending: list[tuple[str, int, int, str, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, receipt: tuple[str, int, int, str, str]) -> None:
        with self._lock:
            self._pending.append(receipt)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._flush_forever, name="beluga-receipts", daemon=True)
                self._thread.start()
        self._wake.set()

    def _flush_forever(self) -> None:
        backoff = self._interval
        while True:
            self._wake.wait()
            time.sleep(backoff)  # let a burst of receipts share one round trip
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                self._fleet.received(batch)
                backoff = self._interval
                self._quiet.recovered()
            except Exception as exc:
                # Kept and tried again (recording a receipt twice is harmless); meanwhile the attempts
                # are still found through their dispatch records.
                self._quiet.error("could not record %d activity receipts", len(batch), exc=exc)
                with self._lock:
                    self._pending[:0] = batch[-10000:]
                backoff = min(1.0, backoff * 4)
                self._wake.set()


def attempt_repr(workflow_id: str, run_id: str, seq: int, attempt: int) -> str:
    """How an activity task's arguments show in Flower and in the broker's message headers, where the
    scheduler looks for an attempt that no worker has taken yet (see `queued`)."""
    return f"({workflow_id!r}, {run_id!r}, seq={seq}, attempt={attempt})"


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
                options: dict[str, Any], details: Any, heartbeat_timeout: float | None
                ) -> tuple[dict[str, Any], float | None]:
    """Run one claimed attempt; returns the inbox message reporting it and the retry delay. The process
    keeps renewing the attempt's lease (unless it promised heartbeats) until the caller has reported it
    and discards it from `rt.in_flight`."""
    fleet = rt.fleet
    if heartbeat_timeout is None:  # no heartbeats promised: the process keeps the lease alive
        rt.in_flight.add((workflow_id, seq, attempt))
        rt.ensure_renewer()

    def beat(details: Any) -> None:
        rt.check(details)
        try:
            fleet.hold_lease(workflow_id, seq, attempt, run_id, heartbeat_timeout, details, beat=True)
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
        by_celery = delay is not None and delay <= CELERY_RETRY_LIMIT
        return messages.encode(ActivityOutcome(seq, attempt, False, failure, delay, retried_by_sender=by_celery),
                               run_id), delay


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
        try:
            rt.coordinator.run(workflow_id)
            _coordinating.recovered()
        except Stuck as exc:  # the run vanished under the coordinator (deleted meanwhile)
            log.warning("%s", exc)
        except TRANSIENT as exc:  # its inbox keeps the messages; the sweep wakes the run again
            _coordinating.error("could not coordinate workflow %s (the sweep will wake it again)", workflow_id,
                                exc=exc)

    @app.task(name="beluga.wake", shared=False, bind=True, acks_late=True, max_retries=None)
    def wake(self: Any, shard: int) -> None:
        rt = runtime(app)
        try:
            rt.wake_batch(int(shard))
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
            # The first delivery of a first attempt cannot be stale, and needs no lease of its own: if
            # its worker dies, its receipt (or, before that, its dispatch record) tells the scheduler.
            details = None
        else:
            try:
                current, details = retry_transient(
                    lambda: fleet.claim(workflow_id, seq, attempt, run_id, heartbeat_timeout), budget,
                    on_error=lambda exc: _reporting.error("could not start attempt %s of %s seq %s; trying "
                                                          "again", attempt, workflow_id, seq, exc=exc))
            except TRANSIENT as exc:  # its receipt lapses once this worker lets the message go
                _reporting.error("giving up starting attempt %s of %s seq %s: it is dispatched again", attempt,
                                 workflow_id, seq, exc=exc)
                return
            if not current:
                log.info("skipping stale attempt %s of %s seq %s", attempt, workflow_id, seq)
                return
        key = (workflow_id, seq, attempt)
        try:
            message, next_delay = run_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options,
                                              details, heartbeat_timeout)
            celery_retry = message.get("celery_retry", False)
            report = (seq, attempt, message, attempt + 1 if celery_retry else None)
            # Redis away: keep trying (the attempt's lease and receipt are renewed meanwhile); reporting
            # twice is harmless, a stale report is ignored. Past the budget the attempt is given up: its
            # lease or receipt lapses and any live worker's scheduler dispatches a new attempt.
            retry_transient(lambda: rt.coordinate_here(workflow_id, report), budget,
                            on_error=lambda exc: _reporting.error("could not report attempt %s of %s seq %s; "
                                                                  "trying again", attempt, workflow_id, seq, exc=exc))
            _reporting.recovered()
        except Exception as exc:
            _reporting.error("giving up reporting attempt %s of %s seq %s: it is dispatched again within %gs",
                             attempt, workflow_id, seq, 2 * budget, exc=exc)
            return
        finally:
            rt.in_flight.discard(key)
        if celery_retry:  # a failed publish rejects the message; the next attempt's dispatch record remains
            raise self.retry(args=(workflow_id, run_id, seq, attempt + 1, name, input, options),
                             countdown=next_delay, argsrepr=attempt_repr(workflow_id, run_id, seq, attempt + 1),
                             kwargsrepr=attempt_kwargsrepr(workflow_id),
                             exc=outcome.take_failure(message.get("payload")))
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
