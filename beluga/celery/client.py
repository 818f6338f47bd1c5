"""Provider `"celery"`: a client of the worker fleet. It needs only the broker and Redis URLs, never the
workflow code, so a Django or Flask view can start, signal, query and cancel runs by name."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from beluga import metrics
from beluga.bridge import pause
from beluga.celery import messages
from beluga.celery.fleet_scripts import PushReply
from beluga.celery.outages import TRANSIENT, may_have_taken_effect
from beluga.core.definitions import registry
from beluga.core.errors import ConfigurationError, ServiceUnavailable, WorkflowNotFound, WorkflowNotRunning
from beluga.core.failure import raise_as_own
from beluga.core.names import check_name
from beluga.core.pending import find_update
from beluga.core.records import Signal, WorkflowState
from beluga.core.retry import Duration, seconds
from beluga.core.steps import CancelRequested, SignalReceived, Terminate, UpdateRequested
from beluga.executors.base import (
    BUILTIN_QUERIES,
    REFUSED_SIGNAL,
    Config,
    StoreBackedExecutor,
    WorkflowHandle,
    WorkflowOptions,
    log_write,
    update_gone,
    update_outcome,
)
from beluga.logs import get_logger
from beluga.resets import ResetResult, reset_run
from beluga.settings import Settings
from beluga.stores.redis import RedisStore
from beluga.stores.redis_keys import shard_of

if TYPE_CHECKING:
    from beluga.celery.process import FleetProcess
    from beluga.schedules import ScheduleService

log = get_logger("beluga.client")
T = TypeVar("T")
SIGNAL_BATCH = 1000  # signals pushed in one pipeline by `signal_many`


class CeleryExecutor(StoreBackedExecutor):
    # whether a run whose code this process has takes its first step here (see `_start`)
    eager_start = True

    def __init__(self, settings: Settings | None = None, *, query_timeout: float = 10.0,
                 parts: FleetProcess | None = None) -> None:
        """`parts`: the fleet parts to use (the async client's own, which it checks itself, see
        beluga/celery/aio.py); else those every client of the app in this process shares."""
        from beluga.celery.app import get_app

        self.app = get_app(settings)
        self._rt = parts if parts is not None else _fleet_parts(self.app)
        if parts is None:
            self.check_redis()
        self.store = self._rt.store
        self.fleet = self._rt.fleet
        self.query_timeout = query_timeout
        self._waits: RedisStore | None = None

    def check_redis(self) -> None:
        """Refuse a history Redis that may evict keys (see `check_history_redis`)."""
        from beluga.celery.app import check_history_redis

        check_history_redis(self._rt.store.redis, self._rt.settings.history_url, worker=False)

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        workflow_id, run_id, _ = self._start(workflow, options or WorkflowOptions(), None)
        return WorkflowHandle(self, workflow_id, run_id)

    def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> WorkflowHandle:
        if options.id is None:
            raise ValueError("signal_with_start needs WorkflowOptions.id: the run to signal or start")
        check_name(signal.name, "signal name")
        self._rt.check(signal.payload)
        message = messages.encode(SignalReceived(signal.name, signal.payload, signal.sender_id, options.identity))
        request_id = options.request_id or signal.request_id
        _, run_id, _ = self._start(workflow, replace(options, request_id=request_id), message)
        log_write("signalled", options.id, options.identity, repr(signal.name))
        return WorkflowHandle(self, options.id, run_id)

    def _start(self, workflow: Any, options: WorkflowOptions, signal: dict[str, Any] | None
               ) -> tuple[str, str, PushReply | None]:
        """Start a run (`execute`), or with `signal`, signal the open run of the id or start one holding
        the signal (`signal_with_start`); then wake it. The workflow id, the run id, and how a signal went
        to an open run (None: this call created the run)."""
        if options.id is not None:
            check_name(options.id, "workflow id")
        self._rt.check(options.input)
        self._rt.check(options.memo)
        request_id = options.request_id or uuid.uuid4().hex
        workflow_id = options.id or str(uuid.uuid4())
        name, writing = "", False

        def start() -> tuple[str, PushReply | None]:
            nonlocal name, writing
            name = name or self._workflow_type(workflow)  # a bare name is checked against Redis: retried too
            writing = True
            return self._rt.begin_run(name, workflow_id, options, request_id, signal)

        run_id, got = self._retrying(f"starting workflow {workflow_id}", start, request_id, wrote=lambda: writing)
        if got is not None:  # the signal went to the run already open
            self._woken(workflow_id, got)
        elif self.eager_start and name in registry.workflows and metrics.shown_here():
            # this process has the code, and what it counts is seen: take the first step here (an eager
            # start; else a worker takes it, and the run is counted where the fleet's metrics are served)
            self._best_effort(lambda: self._rt.coordinate_here(workflow_id), workflow_id)
        else:
            self._wake(workflow_id, options.queue)
        return workflow_id, run_id, got

    def schedule_service(self) -> ScheduleService:
        """Schedules in the fleet's Redis, fired by the workers (beluga/celery/schedules.py)."""
        from beluga.celery.schedules import service

        return service(self._rt)

    def schedule_workflow_type(self, workflow: Any, input: Any) -> str:
        self._rt.check(input)
        return self._workflow_type(workflow)

    def _retrying(self, what: str, call: Callable[[], T], request_id: str | None, *, writes: bool = True,
                  wrote: Callable[[], bool] = lambda: True) -> T:
        """Run `call`, retrying while Redis cannot be reached, does not answer (a frozen Redis: each try
        ends within BELUGA_REDIS_SOCKET_TIMEOUT) or refuses writes for lack of memory, for
        `client_retry_seconds`; then `ServiceUnavailable`. Every retry carries the same request id, so a
        call that took effect before its answer was lost takes effect once. What finally fails says
        whether it may have taken effect (never, for a read: `writes` False; nor when a try failed before
        its write: `wrote` says whether it got that far)."""
        budget = self._rt.settings.client_retry_seconds
        deadline = time.monotonic() + budget
        delay, sent = 0.05, False
        while True:
            try:
                return call()
            except TRANSIENT as exc:
                sent = sent or (writes and wrote() and may_have_taken_effect(exc))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServiceUnavailable(_unavailable(what, budget, exc, writes, sent, request_id),
                                             may_have_taken_effect=sent, request_id=request_id) from exc
                log.warning("%s: %s; retrying in %.2fs", what, exc, min(delay, remaining))
                pause(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    def describe(self, workflow_id: str) -> WorkflowState:
        return self._retrying(f"reading workflow {workflow_id}", lambda: super(CeleryExecutor, self).describe(
            workflow_id), None, writes=False)

    def summary(self, workflow_id: str) -> WorkflowState:
        return self._retrying(f"reading workflow {workflow_id}", lambda: super(CeleryExecutor, self).summary(
            workflow_id), None, writes=False)

    def _wake(self, workflow_id: str, queue: str | None) -> None:
        self._best_effort(lambda: self._rt.sender.wake(workflow_id, queue), workflow_id)

    def _best_effort(self, call: Callable[[], Any], workflow_id: str) -> None:
        """What follows a durable write only speeds the run up: should the broker (or Redis) fail here,
        the run's inbox is marked dirty and a worker's sweeper wakes it within seconds."""
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - nothing the caller could do; the sweeper takes over
            log.warning("could not wake workflow %s now (%s); a worker's sweeper will", workflow_id, exc)

    def _workflow_type(self, workflow: Any) -> str:
        """The name to start. A function is checked here; a bare name against what workers announced
        (a fleet that has announced nothing yet accepts any name, and the run waits for its code)."""
        if not isinstance(workflow, str):
            return registry.workflow(workflow).name
        if workflow in registry.workflows:
            return workflow
        known = self.fleet.known_workflows()
        if known and workflow not in known:
            raise ConfigurationError(f"no workflow registered as {workflow!r} in any worker; workers know "
                                     f"{sorted(known)} (is its module in BELUGA_IMPORTS?)")
        return workflow

    def _send(self, workflow_id: str, input: Any, request_id: str | None, what: str) -> None:
        """Queue a client input, only while the run is open, once per request id; then wake the run."""
        request_id = request_id or uuid.uuid4().hex
        message = messages.encode(input)
        got = self._retrying(f"{what} workflow {workflow_id}",
                             lambda: self.fleet.push_input(workflow_id, message, request_id), request_id)
        if got == PushReply.NO_RUN:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        if got == PushReply.CLOSED:
            state = self.summary(workflow_id)
            raise WorkflowNotRunning(f"workflow {workflow_id} is {state.status.value}; it can no longer be "
                                     "signalled or cancelled")
        self._woken(workflow_id, got)

    def _woken(self, workflow_id: str, got: PushReply) -> None:
        """After an input was queued for an open run (push.lua's answer `got`): wake the run if it is ours to."""
        if got == PushReply.QUEUED_WAKE:  # in its shard's wake set, and no wake task on its way: send it
            self._best_effort(lambda: self._rt.sender.wake_shard(shard_of(workflow_id)), workflow_id)
        elif got == PushReply.QUEUED_BEFORE:  # by an earlier try of this request, which may not have woken the run
            self._wake(workflow_id, None)

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        self._send(workflow_id, self._signal_input(workflow_id, signal, identity), signal.request_id,
                   f"signalling {signal.name!r} to")
        log_write("signalled", workflow_id, identity, repr(signal.name))

    def _signal_input(self, workflow_id: str, signal: Signal, identity: str | None) -> SignalReceived:
        """The run input a signal is, once its id, name and payload are checked."""
        check_name(workflow_id, "workflow id")
        check_name(signal.name, "signal name")
        self._rt.check(signal.payload)
        return SignalReceived(signal.name, signal.payload, signal.sender_id, identity)

    def signal_many(self, signals: Iterable[tuple[str, Signal]], *, identity: str | None = None
                    ) -> list[Exception | None]:
        """As `DurableExecutor.signal_many`: the signals pushed in pipelines of SIGNAL_BATCH (one round trip
        each, retried whole through an outage: each signal's request id keeps it once), then one wake
        task per shard that has runs to wake, instead of a round trip and a wake per signal."""
        pairs = list(signals)
        outcomes: list[Exception | None] = [None] * len(pairs)
        todo: list[tuple[int, str, dict[str, Any], str]] = []
        for i, (workflow_id, signal) in enumerate(pairs):
            try:
                message = messages.encode(self._signal_input(workflow_id, signal, identity))
            except REFUSED_SIGNAL as exc:
                outcomes[i] = exc
                continue
            todo.append((i, workflow_id, message, signal.request_id or uuid.uuid4().hex))
        for first in range(0, len(todo), SIGNAL_BATCH):
            chunk = todo[first:first + SIGNAL_BATCH]
            replies = self._retrying(f"signalling {len(chunk)} workflows", lambda chunk=chunk: self.fleet.push_inputs(
                [(wid, message, request_id) for _, wid, message, request_id in chunk]), None)
            shards: set[int] = set()
            for (i, workflow_id, _, _), got in zip(chunk, replies, strict=True):
                if got == PushReply.NO_RUN:
                    outcomes[i] = WorkflowNotFound(f"no workflow with id {workflow_id!r}")
                elif got == PushReply.CLOSED:
                    outcomes[i] = WorkflowNotRunning(f"workflow {workflow_id} is closed; it can no longer be "
                                                     "signalled or cancelled")
                elif got == PushReply.QUEUED_WAKE:
                    shards.add(shard_of(workflow_id))
                elif got == PushReply.QUEUED_BEFORE:
                    self._wake(workflow_id, None)
            for shard in sorted(shards):
                self._best_effort(lambda shard=shard: self._rt.sender.wake_shard(shard), f"shard {shard}")
        for i, workflow_id, *_ in todo:
            if outcomes[i] is None:
                log_write("signalled", workflow_id, identity, repr(pairs[i][1].name))
        return outcomes

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        self._send(workflow_id, CancelRequested(identity), None, "cancelling")
        log_write("cancel requested for", workflow_id, identity)

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        self._send(workflow_id, Terminate(reason, identity), None, "terminating")
        log_write("terminated", workflow_id, identity, reason)

    def reset(self, workflow_id: str, to: int | str = "last-good", *, identity: str | None = None,
              reapply_signals: bool = True) -> ResetResult:
        """See `DurableExecutor.reset`; the fleet's part is in beluga/celery/resets.py."""
        from beluga.celery.resets import start_reset

        return reset_run(self, self.store, workflow_id, to, now=self.fleet.clock.now,
                         start=lambda plan: start_reset(self, plan), identity=identity,
                         reapply_signals=reapply_signals)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        check_name(workflow_id, "workflow id")
        check_name(query_type, "query name")
        if query_type in BUILTIN_QUERIES:
            return self.builtin_query(workflow_id, query_type)
        self._rt.check(list(args))
        return self._ask(workflow_id, query_type, list(args), f"query {query_type!r}")

    def _ask(self, workflow_id: str, name: str, args: list[Any], what: str) -> Any:
        """A worker's answer from a read-only replay of the run (`beluga.query`): a query handler's value, or
        an update validator's verdict; its error raised as our own."""
        state = self.summary(workflow_id)
        reply_to = self.store.names.reply_channel(uuid.uuid4().hex)
        from beluga.celery.attempts import attempt_kwargsrepr

        # each try without Celery's own publish retries, so that the call keeps to its retry time
        self._retrying(f"asking workflow {workflow_id}", lambda: self._rt.sender.send(
            "beluga.query", (workflow_id, name, args, reply_to), queue=state.queue or None, retry=False,
            kwargsrepr=attempt_kwargsrepr(workflow_id)), None, writes=False)
        answer = self.fleet.wait_reply(reply_to, self.query_timeout, self._blocking_slice())
        if answer is None:
            raise TimeoutError(f"no worker answered {what} for {workflow_id} within {self.query_timeout:g}s")
        if answer.get("ok"):
            return answer.get("value")
        raise_as_own(answer.get("error") or {})

    def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
               timeout: Duration | None = None, identity: str | None = None) -> Any:
        """The validator runs on a worker, read-only (as a query); accepted, the update travels through
        the run's inbox (as a signal, once per update id) and the coordinator that records its end pushes
        the outcome to a reply key this call waits on (the history answers too, should that be missed)."""
        check_name(workflow_id, "workflow id")
        check_name(name, "update name")
        self._rt.check(list(args))
        done = None
        if update_id is not None:  # maybe a retry: an update accepted already is not validated or sent again
            accepted, done = find_update(self.describe(workflow_id).history, check_name(update_id, "update id"))
        else:
            update_id, accepted = uuid.uuid4().hex, False
        if not accepted:
            self._ask(workflow_id, messages.VALIDATE_UPDATE + name, list(args), f"the validation of update {name!r}")
            self._send(workflow_id, UpdateRequested(update_id, name, tuple(args), identity), f"update:{update_id}",
                       f"updating {name!r} of")
            log_write("updated", workflow_id, identity, repr(name))
        if not wait:
            return update_id
        return update_outcome(done or self._wait_update(workflow_id, update_id, seconds(timeout)))

    def _wait_update(self, workflow_id: str, update_id: str, timeout: float | None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.fleet.update_reply_key(workflow_id, update_id)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            got = self.fleet.wait_reply(key, 1.0 if remaining is None else max(0.0, min(1.0, remaining)),
                                        self._blocking_slice())
            if got is not None:
                return got
            state = self.describe(workflow_id)  # another caller of the same update may have taken the reply
            _, done = find_update(state.history, update_id)
            if done is not None:
                return done
            if not state.status.is_open:
                raise update_gone(workflow_id, update_id)
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise TimeoutError(f"update {update_id!r} of workflow {workflow_id} still running after {timeout:g}s")

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        """Wait for the coordinator's announcement that the run closed, re-reading the status on each
        announcement and at least once a second (an announcement is not stored: it may be missed). Through
        an outage (Redis restarted, frozen, full) it keeps waiting; with a `timeout` it raises TimeoutError
        within about a second of it even while Redis is frozen: its reads go through a client whose socket
        timeout is at most a second (`_wait_store`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self._wait_store()
        pubsub = None
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                try:  # through a Redis restart: subscribe again and keep waiting
                    if pubsub is None:
                        pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
                        pubsub.subscribe(self.fleet.closed_channel(workflow_id))
                    state = store.load_summary(workflow_id)
                    if state is None:
                        raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
                    if not state.status.is_open:
                        return state
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is None or remaining > 0:
                        pubsub.get_message(timeout=1.0 if remaining is None else min(1.0, remaining))
                except TRANSIENT:
                    if pubsub is not None:
                        pubsub.reset()  # closes its connection, which may hold an unread reply
                        pubsub = None
                    remaining = None if deadline is None else deadline - time.monotonic()
                    pause(0.2 if remaining is None else min(0.2, max(0.0, remaining)))
                if deadline is not None and deadline - time.monotonic() <= 0:
                    raise TimeoutError(f"workflow {workflow_id} still running after {timeout:g}s")
        finally:
            if pubsub is not None:
                pubsub.reset()

    def _wait_store(self) -> RedisStore:
        """The history store again, through a client whose socket timeout is at most the slice a result
        wait checks its deadline in (a second), so that a frozen Redis cannot hold `result(timeout=t)`
        much past t (the main client's timeout, BELUGA_REDIS_SOCKET_TIMEOUT, may be several seconds)."""
        if self._waits is None:
            s = self._rt.settings
            self._waits = RedisStore(client=self._rt.connect(s.history_url, self._blocking_slice(),
                                                             min(1.0, s.redis_connect_timeout)), prefix=s.key_prefix)
        return self._waits

    def _blocking_slice(self) -> float:
        """How long one blocking wait (a pub/sub read, a BLPOP) may last: at most a second, and well within
        the socket timeout."""
        return min(1.0, self._rt.settings.redis_socket_timeout / 2)

    def close(self) -> None:
        """The result waits' client; the other connections belong to the process's app, shared by its
        executors."""
        if self._waits is not None:
            self._waits.close()
            self._waits = None


def _unavailable(what: str, budget: float, exc: BaseException, writes: bool, sent: bool,
                 request_id: str | None) -> str:
    """What `ServiceUnavailable` says: why, and what the caller can do."""
    why = (f"Redis refused writes for {budget:g}s: it is out of memory (maxmemory reached with noeviction); "
           f"free memory or raise maxmemory ({exc})" if isinstance(exc, redis.exceptions.OutOfMemoryError)
           else f"Redis could not be reached or did not answer for {budget:g}s ({exc})")
    if not writes:
        return f"{what}: {why}; a read, safe to repeat"
    again = (f"request_id {request_id!r}" if request_id is not None
             else "the same request_id on each Signal (set them before the first try)")
    return f"{what}: {why}; " + (f"it may have taken effect: repeat it with {again} to make sure, it takes "
                                 "effect once" if sent else "it did not take effect")


_parts_lock = threading.Lock()


def _fleet_parts(app: Any) -> FleetProcess:
    """The fleet parts every client of `app` in this process shares (one set of Redis connections): the
    worker's, in a worker process (built as it started, see `app.FleetWorkerStep`); else a client's, which
    has no scheduler, holds or eager slot, built here once."""
    from beluga.celery.process import FleetProcess

    with _parts_lock:
        parts = getattr(app, "beluga_process", None)
        if parts is None:
            parts = app.beluga_process = FleetProcess(app, app.conf.beluga_settings)
        return parts


def client_settings(config: Config | None) -> tuple[Settings, float]:
    """The settings a client's `Config` gives (the environment's, overridden by `config.extra`), and its
    query timeout (`extra["query_timeout"]`, 10 s by default)."""
    extra = dict((config or Config()).extra)
    query_timeout = extra.pop("query_timeout", 10.0)
    return Settings.load().with_overrides(**extra), query_timeout


def factory(config: Config | None = None) -> CeleryExecutor:
    settings, query_timeout = client_settings(config)
    return CeleryExecutor(settings, query_timeout=query_timeout)
