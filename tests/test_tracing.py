"""`with_tracing()`: OpenTelemetry spans around execute, signal, query and cancel."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from beluga import workflow
from beluga.stores import InMemoryStore
from tests.executors import workflows as W


def _traced_executor() -> tuple[workflow.DurableExecutor, InMemorySpanExporter]:
    """An in-process executor behind the tracing middleware, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return workflow.apply_middleware(workflow.new_executor(InMemoryStore()),
                                     workflow.with_tracing(provider.get_tracer("test"))), exporter


def test_spans_carry_the_workflow_id_and_record_errors() -> None:
    executor, exporter = _traced_executor()
    try:
        handle = executor.execute(W.wf_progress, workflow.WorkflowOptions(id="traced", input=0))
        executor.signal("traced", workflow.Signal("go", 1))
        assert handle.result(timeout=5) == 1
        assert executor.query("traced", "status") is workflow.WorkflowStatus.COMPLETED
        with pytest.raises(workflow.WorkflowNotRunning):
            executor.cancel("traced")
        with pytest.raises(workflow.WorkflowNotFound):
            executor.signal("missing", workflow.Signal("go"))
    finally:
        executor.close()
    spans = {(s.name, s.attributes.get("workflow.id")): s for s in exporter.get_finished_spans()}
    assert set(spans) >= {("workflow.execute", "traced"), ("workflow.signal", "traced"),
                          ("workflow.query", "traced"), ("workflow.cancel", "traced"),
                          ("workflow.signal", "missing")}
    assert spans[("workflow.signal", "traced")].attributes["workflow.signal"] == "go"
    assert spans[("workflow.query", "traced")].attributes["workflow.query"] == "status"
    failed = spans[("workflow.cancel", "traced")]
    assert failed.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in failed.events)
    assert spans[("workflow.execute", "traced")].status.status_code is not StatusCode.ERROR


_global: dict[str, InMemorySpanExporter] = {}


@workflow.defn(name="tracing_two_steps")
def two_steps(ctx: workflow.WorkflowContext, value: int) -> int:
    ctx.execute_activity(W.echo, value)
    got = ctx.receive_signal("go").receive()
    return ctx.execute_activity(W.echo, got)


def _global_exporter() -> InMemorySpanExporter:
    """Activity spans come from the process's tracer provider (as a worker's would): set one, once."""
    from opentelemetry import trace

    if "exporter" not in _global:
        provider = TracerProvider()
        exporter = _global["exporter"] = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    return _global["exporter"]


def test_in_process_activity_spans_are_children_of_execute() -> None:
    """The context of `workflow.execute` is recorded with the run; each activity attempt's span, even
    one dispatched after a signal sent by another call, is its child."""
    workers = _global_exporter()
    executor, exporter = _traced_executor()
    try:
        handle = executor.execute(two_steps, workflow.WorkflowOptions(id="traced-acts", input=0))
        executor.signal("traced-acts", workflow.Signal("go", 1))
        assert handle.result(timeout=5) == 1
        history = executor.describe("traced-acts").history
    finally:
        executor.close()
    [execute] = [s for s in exporter.get_finished_spans() if s.name == "workflow.execute"]
    acts = [s for s in workers.get_finished_spans() if s.attributes.get("workflow.id") == "traced-acts"]
    scheduled = [e for e in history if e.type == "activity_scheduled"]
    assert len(scheduled) == len(acts) == 2
    for span in acts:
        assert span.name.startswith("activity ")
        assert span.context.trace_id == execute.context.trace_id
        assert span.parent.span_id == execute.context.span_id
    assert history[0].attrs["headers"]["traceparent"].split("-")[2] == f"{execute.context.span_id:016x}"


def test_an_activity_exception_whose_str_raises_is_recorded_on_its_span() -> None:
    """Recording the failed attempt on its span must not call the exception's own `__str__` (which
    raises here): the run fails with the error, the span carries it as printed by Beluga."""
    workers = _global_exporter()
    executor, _ = _traced_executor()
    try:
        with pytest.raises(workflow.WorkflowFailed) as info:
            executor.execute(W.wf_unprintable, workflow.WorkflowOptions(id="traced-unprintable")).result(timeout=5)
    finally:
        executor.close()
    assert "<unprintable Unprintable>" in str(info.value.cause)
    [span] = [s for s in workers.get_finished_spans() if s.attributes.get("workflow.id") == "traced-unprintable"]
    assert span.status.status_code is StatusCode.ERROR
    [event] = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "Unprintable"
    assert event.attributes["exception.message"] == "<unprintable Unprintable>"


def test_without_tracing_no_context_is_recorded() -> None:
    executor = workflow.new_executor(InMemoryStore())
    try:
        executor.execute(W.wf_echo, workflow.WorkflowOptions(id="untraced", input=1)).result(timeout=5)
        assert "headers" not in executor.describe("untraced").history[0].attrs
    finally:
        executor.close()
