"""Imported by the observability test's worker (BELUGA_IMPORTS): an OpenTelemetry SDK tracer provider
whose exporter is the SDK's in-memory exporter, also writing each finished span as a JSON line to the
file named by BELUGA_TEST_SPANS, since the spans are made in the worker's pool processes, not the test's."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class FileSpanExporter(InMemorySpanExporter):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for s in spans:
                parent = s.parent
                out.write(json.dumps({
                    "name": s.name, "pid": os.getpid(), "trace_id": f"{s.context.trace_id:032x}",
                    "span_id": f"{s.context.span_id:016x}",
                    "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
                    "status": s.status.status_code.name, "attributes": dict(s.attributes or {})}) + "\n")
        return super().export(spans)


if os.environ.get("BELUGA_TEST_SPANS"):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(os.environ["BELUGA_TEST_SPANS"])))
    trace.set_tracer_provider(provider)
