"""Provider `"celery"`: a client of the worker fleet. It needs only the broker and Redis URLs, never the
workflow code, so a Django or Flask view can start, signal, query and cancel runs by name."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from beluga import metrics
from beluga.celery import messages
from beluga.celery.fleet_scripts import PushReply
from beluga.celery.outages import TRANSIENT, may_have_taken_effect
from beluga.core.definitions import registry
from beluga.core.errors import ConfigurationError, ServiceUnavailable, WorkflowNotFound, WorkflowNotRunning
from beluga.core.failure import raise_as_own
from beluga.core.names import check_name
from beluga.core.records import Signal, WorkflowState
from beluga.core.retry import seconds
from beluga.core.steps import CancelRequested, SignalReceived, Terminate, TimedOut
from beluga.executors.base import (
    BUILTIN_QUERIES,
    Config,
    StoreBackedExecutor,
    WorkflowHandle,
    WorkflowOptions,
    log_write,
)
from beluga.logs import get_logger
from beluga.runs import new_run_state
from beluga.settings import Settings
from beluga.stores.redis import RedisStore
from beluga.stores.redis_keys import shard_of

if TYPE_CHECKING:
    from beluga.schedules import ScheduleService

log = get_logger("beluga.client")
T = TypeVar("T")


class CeleryExecutor(StoreBackedExecutor):
    def __init__(self, settings: Settings | None = None, *, query_timeout: float = 10.0) -> None:
        from beluga.celery.app import check_history_redis, get_app
        from beluga.celery.runtime import runtime

        self.app = get_app(settings)
        self._rt = runtime(self.app)
        check_history_redis(self._rt.store.redis, self._rt.settings.history_url, worker=False)
        self.store = self._rt.store
        self.fleet = self._rt.fleet
        self.query_timeout = query_timeout
        self._waits: RedisStore | None = None

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        options = options or WorkflowOptions()
        if options.id is not None:
            check_name(options.id, "workflow id")
        self._rt.check(options.input)
        request_id = options.request_id or uuid.uuid4().hex
        workflow_id = options.id or str(uuid.uuid4())
        name, writing = "", False

        def start() -> str:
            nonlocal name, writing
            name = name or self._workflow_type(workflow)  # a bare name is checked against Redis: retried too
            writing = True
            return begin_run(self._rt, name, workflow_id, options, request_id)

        run_id = self._retrying(f"starting workflow {workflow_id}", start, request_id, wrote=lambda: writing)
        if name in registry.workflows and metrics.shown_here():
            # this process has the code, and what it counts is seen: take the first step here (an eager
            # start; else a worker takes it, and the run is counted where the fleet's metrics are served)
            self._best_effort(lambda: self._rt.coordinate_here(workflow_id), workflow_id)
        else:
            self._wake(workflow_id, options.queue)
        return WorkflowHandle(self, workflow_id, run_id)

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
                time.sleep(min(delay, remaining))
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
        if got == PushReply.QUEUED_WAKE:  # in its shard's wake set, and no wake task on its way: send it
            self._best_effort(lambda: self._rt.sender.wake_shard(shard_of(workflow_id)), workflow_id)
        elif got == PushReply.QUEUED_BEFORE:  # by an earlier try of this request, which may not have woken the run
            self._wake(workflow_id, None)

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        check_name(workflow_id, "workflow id")
        check_name(signal.name, "signal name")
        self._rt.check(signal.payload)
        self._send(workflow_id, SignalReceived(signal.name, signal.payload, signal.sender_id, identity),
                   signal.request_id, f"signalling {signal.name!r} to")
        log_write("signalled", workflow_id, identity, repr(signal.name))

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        self._send(workflow_id, CancelRequested(identity), None, "cancelling")
        log_write("cancel requested for", workflow_id, identity)

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        self._send(workflow_id, Terminate(reason, identity), None, "terminating")
        log_write("terminated", workflow_id, identity, reason)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        check_name(workflow_id, "workflow id")
        check_name(query_type, "query name")
        if query_type in BUILTIN_QUERIES:
            return self.builtin_query(workflow_id, query_type)
        self._rt.check(list(args))
        state = self.summary(workflow_id)
        reply_to = self.store.names.reply_channel(uuid.uuid4().hex)
        from beluga.celery.attempts import attempt_kwargsrepr

        # each try without Celery's own publish retries, so that the call keeps to its retry time
        self._retrying(f"querying workflow {workflow_id}", lambda: self.app.tasks["beluga.query"].apply_async(
            (workflow_id, query_type, list(args), reply_to), queue=state.queue or None, retry=False,
            kwargsrepr=attempt_kwargsrepr(workflow_id)), None, writes=False)
        answer = self.fleet.wait_reply(reply_to, self.query_timeout, self._blocking_slice())
        if answer is None:
            raise TimeoutError(f"no worker answered query {query_type!r} for {workflow_id} within "
                               f"{self.query_timeout:g}s")
        if answer.get("ok"):
            return answer.get("value")
        raise_as_own(answer.get("error") or {})

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
                    time.sleep(0.2 if remaining is None else min(0.2, max(0.0, remaining)))
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
            self._waits = RedisStore(s.history_url, prefix=s.key_prefix, socket_timeout=self._blocking_slice(),
                                     connect_timeout=min(1.0, s.redis_connect_timeout))
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


def begin_run(rt: Any, name: str, workflow_id: str, options: WorkflowOptions, request_id: str | None) -> str:
    """Store a new run of `name` in one atomic step: listed, its start message queued and its execution
    timeout armed (the same timer on each retry of one request); returns its run id (the one this request
    made before, on a retry). Waking it is the caller's part."""
    timeout = seconds(options.timeout)
    now = rt.fleet.clock.now()  # the history Redis's clock, as every worker's
    state = new_run_state(name, workflow_id, options.input, timeout, options.queue, now,
                          headers=options.headers, identity=options.identity)
    return rt.fleet.start_run(state, request_id, None if timeout is None else
                              (now + timeout, messages.encode(TimedOut(), state.run_id)))


def _unavailable(what: str, budget: float, exc: BaseException, writes: bool, sent: bool,
                 request_id: str | None) -> str:
    """What `ServiceUnavailable` says: why, and what the caller can do."""
    why = (f"Redis refused writes for {budget:g}s: it is out of memory (maxmemory reached with noeviction); "
           f"free memory or raise maxmemory ({exc})" if isinstance(exc, redis.exceptions.OutOfMemoryError)
           else f"Redis could not be reached or did not answer for {budget:g}s ({exc})")
    if not writes:
        return f"{what}: {why}; a read, safe to repeat"
    return f"{what}: {why}; " + (f"it may have taken effect: repeat it with request_id {request_id!r} to make "
                                 "sure, it takes effect once" if sent else "it did not take effect")


def factory(config: Config | None = None) -> CeleryExecutor:
    config = config or Config()
    extra = dict(config.extra)
    query_timeout = extra.pop("query_timeout", 10.0)
    settings = Settings.load().with_overrides(**extra)
    return CeleryExecutor(settings, query_timeout=query_timeout)
