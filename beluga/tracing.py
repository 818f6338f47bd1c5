"""`with_tracing()`: OpenTelemetry spans around the executor's calls (needs `opentelemetry-api`), and the
context of `workflow.execute` recorded with the run, so that every activity attempt's span, in whatever
process runs it, is its child (see `beluga.propagation`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from beluga import propagation
from beluga.core.errors import ConfigurationError
from beluga.core.records import Signal
from beluga.executors.base import DurableExecutor, WorkflowHandle, WorkflowOptions
from beluga.middleware import DelegatingExecutor, Middleware


class TracingExecutor(DelegatingExecutor):
    def __init__(self, inner: DurableExecutor, tracer: Any) -> None:
        super().__init__(inner)
        self._tracer = tracer

    @contextmanager
    def _span(self, name: str, workflow_id: str | None, **attrs: Any) -> Iterator[Any]:
        # the span's failure is recorded here (`mark_failed`), not by OpenTelemetry's own `str(exc)`
        with self._tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
            if workflow_id is not None:
                span.set_attribute("workflow.id", workflow_id)
            for key, value in attrs.items():
                span.set_attribute(key, value)
            try:
                yield span
            except Exception as exc:
                propagation.mark_failed(span, exc)
                raise

    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        options = options or WorkflowOptions()
        with self._span("workflow.execute", options.id) as span:
            # the span's context travels with the run: each activity attempt's span is its child
            options = replace(options, headers=propagation.inject(options.headers))
            handle = super().execute(workflow, options)
            span.set_attribute("workflow.id", handle.id)
            return handle

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        with self._span("workflow.signal", workflow_id, **{"workflow.signal": signal.name}):
            super().signal(workflow_id, signal, identity=identity)

    def signal_many(self, signals: Iterable[tuple[str, Signal]], *, identity: str | None = None
                    ) -> list[Exception | None]:
        pairs = list(signals)
        with self._span("workflow.signal_many", None, **{"workflow.signals": len(pairs)}):
            return super().signal_many(pairs, identity=identity)

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        with self._span("workflow.query", workflow_id, **{"workflow.query": query_type}):
            return super().query(workflow_id, query_type, *args)

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        with self._span("workflow.cancel", workflow_id):
            super().cancel(workflow_id, identity=identity)


def with_tracing(tracer: Any = None) -> Middleware:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigurationError("with_tracing() needs OpenTelemetry: pip install opentelemetry-api") from exc
    chosen = tracer or trace.get_tracer("beluga")
    return lambda executor: TracingExecutor(executor, chosen)
