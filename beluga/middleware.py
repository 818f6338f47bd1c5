"""Middleware wraps an executor to add cross-cutting behaviour; the first one given is the outermost."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from beluga.core.records import Signal, WorkflowState
from beluga.executors.base import DurableExecutor, WorkflowHandle, WorkflowOptions
from beluga.executors.scheduling import ScheduleOperations
from beluga.hooks import Hooks, compose_hooks
from beluga.logs import get_logger

log = get_logger("beluga.middleware")

Middleware = Callable[[DurableExecutor], DurableExecutor]


def apply_middleware(executor: DurableExecutor, *middlewares: Middleware) -> DurableExecutor:
    for mw in reversed(middlewares):
        executor = mw(executor)
    return executor


class DelegatingExecutor(DurableExecutor):
    """Forwards everything to `inner`; middleware subclasses override what they change."""

    def __init__(self, inner: DurableExecutor) -> None:
        self.inner = inner

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        handle = self.inner.execute(workflow, options)
        return WorkflowHandle(self, handle.id, handle.run_id)

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        self.inner.signal(workflow_id, signal, identity=identity)

    def signal_many(self, signals: Iterable[tuple[str, Signal]], *, identity: str | None = None
                    ) -> list[Exception | None]:
        return self.inner.signal_many(signals, identity=identity)

    def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> WorkflowHandle:
        handle = self.inner.signal_with_start(workflow, options, signal)
        return WorkflowHandle(self, handle.id, handle.run_id)

    def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
               timeout: float | None = None, identity: str | None = None) -> Any:
        return self.inner.update(workflow_id, name, *args, update_id=update_id, wait=wait, timeout=timeout,
                                 identity=identity)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        return self.inner.query(workflow_id, query_type, *args)

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        self.inner.cancel(workflow_id, identity=identity)

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        self.inner.terminate(workflow_id, reason, identity=identity)

    def describe(self, workflow_id: str) -> WorkflowState:
        return self.inner.describe(workflow_id)

    def summary(self, workflow_id: str) -> WorkflowState:
        return self.inner.summary(workflow_id)

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        return self.inner.wait_closed(workflow_id, timeout)

    def close(self) -> None:
        self.inner.close()

    def schedule_service(self) -> ScheduleOperations:  # the schedule calls of the executor it wraps
        return self.inner.schedule_service()

    def schedule_workflow_type(self, workflow: Any, input: Any) -> str:
        return self.inner.schedule_workflow_type(workflow, input)

    def __getattr__(self, name: str) -> Any:  # provider-specific extras (recover, store, ...)
        return getattr(self.inner, name)


def with_hooks(hooks: Hooks) -> Middleware:
    """Add `hooks` to an executor's own: all seven callbacks fire, from the engine that sees the event."""

    def wrap(executor: DurableExecutor) -> DurableExecutor:
        inner: Any = executor
        while isinstance(inner, DelegatingExecutor):
            inner = inner.inner
        engine_hooks = getattr(inner, "hooks", None)
        if not isinstance(engine_hooks, Hooks):
            raise TypeError(f"{type(inner).__name__} does not support hooks")
        combined = compose_hooks(engine_hooks, hooks)
        inner.set_hooks(combined)
        return executor

    return wrap
