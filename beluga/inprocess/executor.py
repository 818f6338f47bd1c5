"""The default executor: durable workflows in the calling process, no server needed.

Runs and activities execute on threads of this process; every event is in the store before the engine
acts on it, so a new executor on the same store resumes whatever a crashed one left open.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from beluga.core.definitions import Registry
from beluga.core.definitions import registry as default_registry
from beluga.core.errors import ConfigurationError
from beluga.core.names import check_name
from beluga.core.pending import find_update
from beluga.core.records import Signal, WorkflowState
from beluga.core.reset import ResetPlan
from beluga.core.retry import Duration, seconds
from beluga.core.steps import CancelRequested, SignalReceived, Terminate
from beluga.executors.base import (
    BUILTIN_QUERIES,
    Config,
    StoreBackedExecutor,
    WorkflowHandle,
    WorkflowOptions,
    log_write,
    update_gone,
    update_outcome,
)
from beluga.hooks import Hooks
from beluga.inprocess.engine import Engine
from beluga.inprocess.records import Msg, Query, Recover, SignalWithStart, Update, input_msg
from beluga.inprocess.schedules import ScheduleLoop
from beluga.resets import ResetResult, reset_run
from beluga.runs import DEFAULT_MAX_PAYLOAD, new_run_state, payload_checker
from beluga.stores.base import WorkflowStore


class InProcessExecutor(StoreBackedExecutor):
    """Provider `"default"`. `workers` threads run activities, and one event loop runs `async def` ones,
    `async_activities` attempts in flight at once (default: the setting `BELUGA_ASYNC_CONCURRENCY`);
    `cache_size` bounds the runs kept live in memory (the rest are replayed from the store when they
    wake). `metrics_port` (default: the setting `BELUGA_METRICS_PORT`) serves Prometheus metrics from this
    process (`beluga.metrics`). Schedules kept in the store fire from a thread of this executor every
    `schedule_interval` seconds (None: not here)."""

    def __init__(self, store: WorkflowStore | None = None, hooks: Hooks | None = None, *,
                 registry: Registry | None = None, workers: int = 8, cache_size: int = 2000,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD, recover: bool = True,
                 clock: Callable[[], float] = time.time, metrics_port: int | None = None,
                 schedule_interval: float | None = 0.5, async_activities: int | None = None) -> None:
        if store is None:
            from beluga.stores.sqlite import SQLiteStore

            store = SQLiteStore("beluga.db")
        self.store = store
        self.hooks = hooks or Hooks()
        self.registry = registry or default_registry
        self._check = payload_checker(max_payload_bytes)
        self.clock = clock  # epoch seconds; every recorded time comes from here (tests inject their own)
        from beluga.settings import Settings

        settings = Settings.load()
        metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        async_activities = settings.async_concurrency if async_activities is None else async_activities
        self._engine = Engine(store, self.registry, self.hooks, workers=workers, cache_size=cache_size,
                              check_payload=self._check, clock=clock, async_activities=async_activities,
                              priority_aging=settings.priority_aging)
        self._engine.start()
        if metrics_port:
            from beluga import metrics

            metrics.serve(metrics_port, store=store)
        if recover:
            self.recover()
        self._schedule_loop = self._start_schedule_loop(schedule_interval)

    def _start_schedule_loop(self, interval: float | None) -> ScheduleLoop | None:
        if interval is None:
            return None
        try:
            service = self.schedule_service()
        except ConfigurationError:  # a store that keeps no schedules
            return None
        return ScheduleLoop(service, interval).start()

    def schedule_workflow_type(self, workflow: Any, input: Any) -> str:
        self._check(input)
        return self.registry.workflow(workflow).name

    def schedule_clock(self) -> float:
        return self.clock()

    def set_hooks(self, hooks: Hooks) -> None:
        self.hooks = self._engine.hooks = hooks

    def recover(self) -> int:
        """Resume every open run found in the store; returns how many there were."""
        return int(self._engine.call(Msg("", None, Recover()), timeout=600))

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        options = options or WorkflowOptions()
        state = self._new_run(workflow, options)
        self.store.create(state)
        self._engine.forget(state.workflow_id)
        self.hooks.emit("on_workflow_start", state.workflow_id, options.input)
        self._engine.created(state)
        return WorkflowHandle(self, state.workflow_id, state.run_id)

    def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> WorkflowHandle:
        if options.id is None:
            raise ValueError("signal_with_start needs WorkflowOptions.id: the run to signal or start")
        check_name(signal.name, "signal name")
        self._check(signal.payload)
        state = self._new_run(workflow, options)
        run_id = self._engine.call(Msg(state.workflow_id, None, SignalWithStart(state, SignalReceived(
            signal.name, signal.payload, signal.sender_id, options.identity))))
        if run_id == state.run_id:
            self.hooks.emit("on_workflow_start", state.workflow_id, options.input)
        log_write("signalled", state.workflow_id, options.identity, repr(signal.name))
        return WorkflowHandle(self, state.workflow_id, run_id)

    def _new_run(self, workflow: Any, options: WorkflowOptions) -> WorkflowState:
        """The first state of a run `options` describe, checked (not yet stored)."""
        defn = self.registry.workflow(workflow)
        if options.id is not None:
            check_name(options.id, "workflow id")
        self._check(options.input)
        self._check(options.memo)
        return new_run_state(defn.name, options.id or str(uuid.uuid4()), options.input, seconds(options.timeout),
                             options.queue, self.clock(), headers=options.headers, identity=options.identity,
                             search_attributes=options.search_attributes, memo=options.memo,
                             priority=options.priority)

    def reset(self, workflow_id: str, to: int | str = "last-good", *, identity: str | None = None,
              reapply_signals: bool = True) -> ResetResult:
        return reset_run(self, self.store, workflow_id, to, now=self.clock, start=self._start_reset,
                         identity=identity, reapply_signals=reapply_signals)

    def _start_reset(self, plan: ResetPlan) -> None:
        """Store the reset run over the closed one; the engine replays it, records what the current code
        asks for after the point, and re-arms what was in flight there (see `Engine._start`)."""
        self.store.create(plan.state)
        self._engine.forget(plan.state.workflow_id)
        self._engine.created(plan.state)

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        check_name(workflow_id, "workflow id")
        check_name(signal.name, "signal name")
        self._check(signal.payload)
        self._engine.call(input_msg(workflow_id, None, SignalReceived(signal.name, signal.payload, signal.sender_id,
                                                                      identity)))
        log_write("signalled", workflow_id, identity, repr(signal.name))

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        self._engine.call(input_msg(workflow_id, None, CancelRequested(identity)))
        log_write("cancel requested for", workflow_id, identity)

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        self._engine.call(input_msg(workflow_id, None, Terminate(reason, identity)))
        log_write("terminated", workflow_id, identity, reason)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        check_name(workflow_id, "workflow id")
        check_name(query_type, "query name")
        if query_type in BUILTIN_QUERIES:
            return self.builtin_query(workflow_id, query_type)
        self._check(list(args))
        return self._engine.call(Msg(workflow_id, None, Query(query_type, args)))

    def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
               timeout: Duration | None = None, identity: str | None = None) -> Any:
        check_name(workflow_id, "workflow id")
        check_name(name, "update name")
        self._check(list(args))
        update_id = check_name(update_id, "update id") if update_id is not None else uuid.uuid4().hex
        accepted, done = find_update(self.describe(workflow_id).history, update_id)
        if not accepted:
            self._engine.call(Msg(workflow_id, None, Update(update_id, name, tuple(args), identity)))
            log_write("updated", workflow_id, identity, repr(name))
        if not wait:
            return update_id
        return update_outcome(done or self._wait_update(workflow_id, update_id, seconds(timeout)))

    def _wait_update(self, workflow_id: str, update_id: str, timeout: float | None) -> dict[str, Any]:
        """The update's outcome: told by the engine when it ends here, else read from the store (another
        executor on the same store may run the workflow)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done = self._engine.update_done(workflow_id, update_id)
            if done is not None:
                return done
            state = self.describe(workflow_id)
            _, done = find_update(state.history, update_id)
            if done is not None:
                return done
            if not state.status.is_open:
                raise update_gone(workflow_id, update_id)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"update {update_id!r} of workflow {workflow_id} still running after {timeout:g}s")
            self._engine.wait_change(0.25 if remaining is None else min(0.25, remaining), workflow_id)

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        deadline = None if timeout is None else time.monotonic() + timeout
        engine = self._engine
        while True:
            state = engine.closed_state(workflow_id) or self.summary(workflow_id)
            if not state.status.is_open:
                return state
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"workflow {workflow_id} still running after {timeout:g}s")
            engine.wait_change(0.25 if remaining is None else min(0.25, remaining), workflow_id)

    def close(self) -> None:
        if self._schedule_loop is not None:
            self._schedule_loop.stop()
        self._engine.stop()


def factory(config: Config | None = None) -> InProcessExecutor:
    config = config or Config()
    extra = dict(config.extra)
    return InProcessExecutor(config.store, config.hooks, **extra)
