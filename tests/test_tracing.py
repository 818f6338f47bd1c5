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


def test_spans_carry_the_workflow_id_and_record_errors() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    executor = workflow.apply_middleware(workflow.new_executor(InMemoryStore()),
                                         workflow.with_tracing(provider.get_tracer("test")))
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
