"""OpenTelemetry context from the client's `execute` to every activity attempt of the run.

`with_tracing()` injects the context of its `workflow.execute` span into `WorkflowOptions.headers`
(W3C `traceparent`/`tracestate`); the executor records them in the run's `workflow_started` event, so
they outlive any process. Whichever process then dispatches an activity attempt (a worker's coordinator,
the in-process engine) hands them to it, and the attempt runs inside a span `activity <name>` whose
parent is the client's span: one trace from the web request that started an order to the last activity,
across worker processes, retries and restarts. Spans made inside the activity nest under it.

Needs `opentelemetry-api` where spans are wanted, and a configured tracer provider (the SDK, an
exporter) in the workers; without either, nothing is done.
"""

from __future__ import annotations

from typing import Any

_api: Any = None  # (context, propagate, trace) once imported; False when OpenTelemetry is missing


def _otel() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            _api = False
        else:
            _api = (context, propagate, trace)
    return _api or None


def inject(headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """`headers` plus the current trace context (None when there is none to carry)."""
    api = _otel()
    carrier = dict(headers or {})
    if api is not None:
        api[1].inject(carrier)
    return carrier or None


def _recording(trace: Any) -> bool:
    """Whether a tracer provider was configured (the API's default provider makes no spans)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def start_activity(workflow_id: str, run_id: str, name: str, seq: int, attempt: int,
                   headers: dict[str, str] | None) -> Any:
    """Start the attempt's span, as a child of the run's recorded context, and make it current. Returns
    a handle for `end`, or None when no span is made."""
    api = _otel()
    if api is None:
        return None
    context, propagate, trace = api
    if not _recording(trace):
        return None
    parent = propagate.extract(headers) if headers else None
    span = trace.get_tracer("beluga").start_span(
        f"activity {name}", context=parent, kind=trace.SpanKind.CONSUMER,
        attributes={"workflow.id": workflow_id, "workflow.run_id": run_id, "activity.name": name,
                    "activity.seq": seq, "activity.attempt": attempt})
    token = context.attach(trace.set_span_in_context(span))
    return span, token


def end(handle: Any, error: BaseException | None = None, failed: bool = False, current: bool = True) -> None:
    """End a span from `start_activity`; `error` (or `failed`) marks it as an error. `current=False`: it
    was made current in another thread, which `detach`ed it already (an async attempt)."""
    if handle is None:
        return
    span, _ = handle
    if current:
        detach(handle)
    if error is not None or failed:
        mark_failed(span, error)
    span.end()


def detach(handle: Any) -> None:
    """Stop the span of `start_activity` being current in this thread, without ending it."""
    if handle is None:
        return
    api = _otel()
    try:
        api[0].detach(handle[1])
    except Exception:  # detached in another context: the span is ended all the same
        pass


def mark_failed(span: Any, error: BaseException | None) -> None:
    """Mark `span` as an error, with `error` as its exception event: the attributes OpenTelemetry's
    `record_exception` writes, taken from Beluga's failure record, so that an exception whose `__str__`
    raises is recorded too instead of breaking the code that reports it."""
    from opentelemetry.trace import Status, StatusCode

    if error is None:
        span.set_status(Status(StatusCode.ERROR, "failed"))
        return
    from beluga.core.failure import to_failure

    f = to_failure(error)
    span.add_event("exception", {"exception.type": f["type"], "exception.message": f["message"],
                                 "exception.stacktrace": f["traceback"], "exception.escaped": "False"})
    span.set_status(Status(StatusCode.ERROR, f["message"]))
