"""Provider `"celery"`: a client of the worker fleet. It needs only the broker and Redis URLs, never the
workflow code, so a Django or Flask view can start, signal, query and cancel runs by name."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from beluga.celery import messages
from beluga.celery.outages import TRANSIENT
from beluga.core.definitions import registry
from beluga.core.errors import ConfigurationError, ServiceUnavailable, WorkflowNotFound, WorkflowNotRunning
from beluga.core.failure import raise_as_own
from beluga.core.records import Signal, WorkflowState
from beluga.core.retry import seconds
from beluga.core.steps import CancelRequested, SignalReceived, Terminate, TimedOut
from beluga.executors._runs import new_run_state
from beluga.executors.base import BUILTIN_QUERIES, Config, StoreBackedExecutor, WorkflowHandle, WorkflowOptions
from beluga.logs import get_logger
from beluga.settings import Settings
from beluga.stores.redis import shard_of

log = get_logger("beluga.client")
T = TypeVar("T")


class CeleryExecutor(StoreBackedExecutor):
    def __init__(self, settings: Settings | None = None, *, query_timeout: float = 10.0) -> None:
        from beluga.celery.app import get_app
        from beluga.celery.runtime import runtime

        self.app = get_app(settings)
        self._rt = runtime(self.app)
        self.store = self._rt.store
        self.fleet = self._rt.fleet
        self.query_timeout = query_timeout

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        options = options or WorkflowOptions()
        name = self._workflow_type(workflow)
        self._rt.check(options.input)
        timeout = seconds(options.timeout)
        request_id = options.request_id or uuid.uuid4().hex
        workflow_id = options.id or str(uuid.uuid4())

        def start() -> str:
            now = self.fleet.clock.now()  # the history Redis's clock, as every worker's
            state = new_run_state(name, workflow_id, options.input, timeout, options.queue, now,
                                  headers=options.headers)
            run_id = self.fleet.start_run(state, request_id)  # its start message is queued with it
            if timeout is not None:  # the same member each retry: armed once
                self.fleet.arm(workflow_id, now + timeout, messages.encode(TimedOut(), run_id))
            return run_id

        run_id = self._retrying(f"starting workflow {workflow_id}", start, request_id)
        if name in registry.workflows:  # this process has the code: take the first step here (eager start)
            self._best_effort(lambda: self._rt.coordinate_here(workflow_id), workflow_id)
        else:
            self._wake(workflow_id, options.queue)
        return WorkflowHandle(self, workflow_id, run_id)

    def _retrying(self, what: str, call: Callable[[], T], request_id: str | None) -> T:
        """Run `call`, retrying while Redis cannot be reached, for `client_retry_seconds`. Every retry
        carries the same request id, so a call that took effect before its answer was lost takes effect
        once. What finally fails says whether it may have taken effect."""
        deadline = time.monotonic() + self._rt.settings.client_retry_seconds
        delay, sent = 0.05, False
        while True:
            try:
                return call()
            except TRANSIENT as exc:
                # A refused connection sent nothing; any other failure may have reached Redis.
                sent = sent or not isinstance(exc, redis.ConnectionError) or "Connection refused" not in str(exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServiceUnavailable(
                        f"{what}: Redis could not be reached for {self._rt.settings.client_retry_seconds:g}s "
                        f"({exc}); " + ("it may have taken effect: repeat it with request_id "
                                        f"{request_id!r} to make sure, it takes effect once" if sent else
                                        "it did not take effect"),
                        may_have_taken_effect=sent, request_id=request_id) from exc
                log.warning("%s: %s; retrying in %.2fs", what, exc, min(delay, remaining))
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    def _wake(self, workflow_id: str, queue: str | None) -> None:
        self._best_effort(lambda: self._rt.wake(workflow_id, queue), workflow_id)

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
        if got == -1:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        if got == -2:
            state = self.summary(workflow_id)
            raise WorkflowNotRunning(f"workflow {workflow_id} is {state.status.value}; it can no longer be "
                                     "signalled or cancelled")
        if got == 2:  # the run joined its shard's wake set, and no wake task is on its way: send it
            self._best_effort(lambda: self._rt.wake_shard(shard_of(workflow_id)), workflow_id)
        elif got == 1:  # queued by an earlier try of this request, which may not have woken the run
            self._wake(workflow_id, None)

    def signal(self, workflow_id: str, signal: Signal) -> None:
        self._rt.check(signal.payload)
        self._send(workflow_id, SignalReceived(signal.name, signal.payload, signal.sender_id), signal.request_id,
                   f"signalling {signal.name!r} to")

    def cancel(self, workflow_id: str) -> None:
        self._send(workflow_id, CancelRequested(), None, "cancelling")

    def terminate(self, workflow_id: str, reason: str = "") -> None:
        self._send(workflow_id, Terminate(reason), None, "terminating")

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        if query_type in BUILTIN_QUERIES:
            return self.builtin_query(workflow_id, query_type)
        state = self.describe(workflow_id)
        reply_to = f"{self.store.prefix}:reply:{uuid.uuid4().hex}"
        from beluga.celery.attempts import attempt_kwargsrepr

        self.app.tasks["beluga.query"].apply_async((workflow_id, query_type, list(args), reply_to),
                                                   queue=state.queue or None,
                                                   kwargsrepr=attempt_kwargsrepr(workflow_id))
        answer = self.fleet.wait_reply(reply_to, self.query_timeout)
        if answer is None:
            raise TimeoutError(f"no worker answered query {query_type!r} for {workflow_id} within "
                               f"{self.query_timeout:g}s")
        if answer.get("ok"):
            return answer.get("value")
        raise_as_own(answer.get("error") or {})

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        """Wait for the coordinator's announcement that the run closed, re-reading the status on each
        announcement and at least once a second (an announcement is not stored: it may be missed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pubsub = None
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                try:  # through a Redis restart: subscribe again and keep waiting
                    if pubsub is None:
                        pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
                        pubsub.subscribe(self.fleet.closed_channel(workflow_id))
                    state = self.summary(workflow_id)
                    if not state.status.is_open:
                        return state
                    if remaining is None or remaining > 0:
                        pubsub.get_message(timeout=1.0 if remaining is None else min(1.0, remaining))
                except TRANSIENT:
                    if pubsub is not None:
                        pubsub.close()
                        pubsub = None
                    time.sleep(0.2 if remaining is None else min(0.2, max(0.0, remaining)))
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"workflow {workflow_id} still running after {timeout:g}s")
        finally:
            if pubsub is not None:
                pubsub.close()

    def close(self) -> None:
        """Nothing to release: connections belong to the process's app, shared by its executors."""


def factory(config: Config | None = None) -> CeleryExecutor:
    config = config or Config()
    extra = dict(config.extra)
    query_timeout = extra.pop("query_timeout", 10.0)
    settings = Settings.load().with_overrides(**extra)
    return CeleryExecutor(settings, query_timeout=query_timeout)
