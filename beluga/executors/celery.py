"""Provider `"celery"`: a client of the worker fleet. It needs only the broker and Redis URLs, never the
workflow code, so a Django or Flask view can start, signal, query and cancel runs by name."""

from __future__ import annotations

import time
import uuid
from typing import Any

from beluga.celery.outages import TRANSIENT
from beluga.core.definitions import registry
from beluga.core.errors import ConfigurationError, WorkflowAlreadyStarted, WorkflowNotRunning
from beluga.core.failure import from_failure
from beluga.core.records import Signal, WorkflowState
from beluga.core.retry import seconds
from beluga.executors._runs import new_run_state
from beluga.executors.base import BUILTIN_QUERIES, Config, StoreBackedExecutor, WorkflowHandle, WorkflowOptions
from beluga.settings import Settings


class CeleryExecutor(StoreBackedExecutor):
    def __init__(self, settings: Settings | None = None, *, query_timeout: float = 10.0) -> None:
        from beluga.celery.app import get_app
        from beluga.celery.tasks import runtime

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
        now = time.time()
        state = new_run_state(name, options.id or str(uuid.uuid4()), options.input, timeout, options.queue, now)
        try:
            self.store.create(state)
        except WorkflowAlreadyStarted:
            # A retried call may meet the run its earlier try stored before failing to queue the start
            # message below; without one nothing would ever wake that run. A second one is harmless.
            self.fleet.push(state.workflow_id, {"k": "start"})
            raise
        self.fleet.push(state.workflow_id, {"k": "start"})  # found by the sweeper should the wake be lost
        if timeout is not None:
            self.fleet.arm(state.workflow_id, now + timeout, {"k": "timeout", "run": state.run_id})
        if name in registry.workflows:  # this process has the code: take the first step here (eager start)
            try:
                self._rt.coordinate_here(state.workflow_id)
            except TRANSIENT:  # the run and its start message are stored: the fleet's sweep starts it
                pass
        else:
            self._rt.wake(state.workflow_id, options.queue)
        return WorkflowHandle(self, state.workflow_id, state.run_id)

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

    def _open(self, workflow_id: str) -> WorkflowState:
        state = self.summary(workflow_id)
        if not state.status.is_open:
            raise WorkflowNotRunning(f"workflow {workflow_id} is {state.status.value}; it can no longer be "
                                     "signalled or cancelled")
        return state

    def signal(self, workflow_id: str, signal: Signal) -> None:
        self._rt.check(signal.payload)
        state = self._open(workflow_id)
        self.fleet.push(workflow_id, {"k": "signal", "name": signal.name, "payload": signal.payload,
                                      "sender_id": signal.sender_id, "sent_at": signal.sent_at or time.time()})
        self._rt.wake(workflow_id, state.queue)

    def cancel(self, workflow_id: str) -> None:
        state = self._open(workflow_id)
        self.fleet.push(workflow_id, {"k": "cancel"})
        self._rt.wake(workflow_id, state.queue)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        if query_type in BUILTIN_QUERIES:
            return self.builtin_query(workflow_id, query_type)
        state = self.describe(workflow_id)
        reply_to = f"{self.store.prefix}:reply:{uuid.uuid4().hex}"
        self.app.tasks["beluga.query"].apply_async((workflow_id, query_type, list(args), reply_to),
                                                   queue=state.queue or None)
        answer = self.fleet.wait_reply(reply_to, self.query_timeout)
        if answer is None:
            raise TimeoutError(f"no worker answered query {query_type!r} for {workflow_id} within "
                               f"{self.query_timeout:g}s")
        if answer.get("ok"):
            return answer.get("value")
        error = answer.get("error") or {}
        if error.get("type") == "QueryNotFound":
            from beluga.core.errors import QueryNotFound

            raise QueryNotFound(error.get("message", ""))
        raise from_failure(error)

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
