"""Metrics, logs and traces from a real worker (prefork, two pool processes) on a fleet of its own:
`BELUGA_METRICS_PORT` serves what every pool process counted; each log line about a run names its
workflow id, run id and, for activities, seq and attempt; and the OpenTelemetry context of the client's
`execute` reaches every activity span, through the coordinator, a signal and retries.

The workflows are started by name: the test process must not have their code, or the client would take
each run's first step itself (an eager start) and count it here instead of in the worker."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from beluga import workflow
from beluga.core.definitions import registry
from beluga.runs import new_run_state
from tests.executors.helpers import eventually
from tests.fleet import WORKER_IMPORTS, Worker, fleet_env, free_port, redis_server


class Observed:
    def __init__(self, url: str, worker: Worker, spans: Path, metrics_port: int) -> None:
        self.url = url
        self.worker = worker
        self.spans_path = spans
        self.metrics_port = metrics_port

    def executor(self) -> workflow.DurableExecutor:
        return workflow.new("celery", workflow.Config(extra={"broker_url": self.url, "redis_url": self.url}))

    def spans(self) -> list[dict[str, Any]]:
        if not self.spans_path.exists():
            return []
        return [json.loads(line) for line in self.spans_path.read_text().splitlines() if line.strip()]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    assert "fleet_observed" not in registry.workflows, "the test process must not import tests.celery.workflows"
    tmp = tmp_path_factory.mktemp("observed")
    spans, port = tmp / "spans.jsonl", free_port()
    with redis_server() as url:
        env = fleet_env(url, BELUGA_IMPORTS=WORKER_IMPORTS + ",tests.celery.tracing_setup",
                        BELUGA_TEST_SPANS=str(spans), BELUGA_METRICS_PORT=str(port))
        worker = Worker(env, "observed", tmp, concurrency=2)
        try:
            worker.wait_ready()
            yield Observed(url, worker, spans, port)
        finally:
            worker.stop()


def _wait(what: str, check: Any) -> Any:
    """The workers report through other processes: wait up to 20 s."""
    return eventually(check, timeout=20, interval=0.1, what=what)


def _run_observed(observed: Observed, tracer: Any = None) -> tuple[str, str]:
    """Run fleet_observed to completion (the signal sent by a second client, without tracing)."""
    ex = observed.executor()
    traced = workflow.apply_middleware(ex, workflow.with_tracing(tracer)) if tracer is not None else ex
    wid = f"observed-{uuid.uuid4().hex[:8]}"
    handle = traced.execute("fleet_observed", workflow.WorkflowOptions(id=wid, input={"order": wid}))
    _wait("the flaky activity", lambda: any(e.type == "activity_completed" for e in ex.describe(wid).history))
    observed.executor().signal(wid, workflow.Signal("go", 1))
    assert handle.result(timeout=30) == "charged"
    return wid, handle.run_id


def test_activity_spans_belong_to_the_trace_of_execute(observed: Observed) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    wid, run_id = _run_observed(observed, provider.get_tracer("shop.web"))
    [execute] = [s for s in exporter.get_finished_spans() if s.name == "workflow.execute"]
    trace_id, execute_id = f"{execute.context.trace_id:032x}", f"{execute.context.span_id:016x}"

    def ours() -> list[dict[str, Any]]:
        found = [s for s in observed.spans() if s["attributes"].get("workflow.id") == wid]
        return found if len(found) == 4 else []

    activity_spans = _wait("the workers' activity spans", ours)
    assert sorted((s["name"], s["attributes"]["activity.attempt"], s["status"]) for s in activity_spans) == [
        ("activity fleet_flaky", 1, "ERROR"), ("activity fleet_flaky", 2, "ERROR"),
        ("activity fleet_flaky", 3, "UNSET"), ("activity fleet_logged", 1, "UNSET")]
    for span in activity_spans:   # every attempt, whichever pool process ran it, is a child of execute
        assert (span["trace_id"], span["parent_span_id"]) == (trace_id, execute_id), span
        assert span["attributes"]["workflow.run_id"] == run_id
    [charge] = [s for s in observed.spans() if s["name"] == "charge card" and s["trace_id"] == trace_id]
    [logged] = [s for s in activity_spans if s["name"] == "activity fleet_logged"]
    assert charge["parent_span_id"] == logged["span_id"]   # the activity's own spans nest under its span


def test_log_lines_about_a_run_name_it(observed: Observed) -> None:
    wid, run_id = _run_observed(observed)
    lines = _wait("the worker's log lines", lambda: [line for line in observed.worker.log().splitlines()
                                                     if f"workflow {wid} " in line and "charging" in line])
    # the activity's own log line (a logger of its own, through the worker's handler)
    assert re.search(rf"charging {wid} \[workflow {wid} run {run_id} activity fleet_logged seq \d+ attempt 1\]$",
                     lines[0]), lines
    log = observed.worker.log()
    # Celery's lines about the attempts: two retries, and the success of the third
    for attempt in (1, 2):
        assert re.search(rf"activity:fleet_flaky\[[-0-9a-f]+\] retry: .*flaky attempt {attempt}.* \[workflow {wid} "
                         rf"run {run_id} activity fleet_flaky seq 1 attempt {attempt}\]", log), attempt
    assert re.search(rf"activity:fleet_flaky\[[-0-9a-f]+\] succeeded in .*: 3 \[workflow {wid} run {run_id} "
                     rf"activity fleet_flaky seq 1 attempt 3\]", log)


def test_metrics_count_what_the_pool_processes_did(observed: Observed) -> None:
    before = observed.metrics()
    wid, _ = _run_observed(observed)
    ex = observed.executor()
    with pytest.raises(workflow.WorkflowFailed):
        ex.execute("fleet_refusing", workflow.WorkflowOptions(input={"order": "x", "attempts": 1})).result(timeout=30)
    stuck = f"stuck-{uuid.uuid4().hex[:8]}"   # a run whose workflow type no worker has: it gets stuck
    ex.fleet.start_run(new_run_state("no_such_workflow", stuck, None, None, None, time.time()))
    ex._rt.sender.wake(stuck, None)
    _wait("the stuck run", lambda: ex.summary(stuck).error)
    ex.terminate(stuck, "test over")
    _wait("the terminated run", lambda: not ex.summary(stuck).status.is_open)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return observed.metrics().get(key, 0.0) - before.get(key, 0.0)

    _wait("the last attempt's metrics", lambda: grew("beluga_activity_attempts_total", activity="fleet_logged") == 1)
    assert grew("beluga_runs_started_total", workflow_type="fleet_observed") == 1
    assert grew("beluga_runs_completed_total", workflow_type="fleet_observed") == 1
    assert grew("beluga_runs_failed_total", workflow_type="fleet_refusing", status="failed") == 1
    assert grew("beluga_runs_canceled_total", workflow_type="no_such_workflow") == 1
    assert grew("beluga_runs_stuck_total", workflow_type="no_such_workflow", reason="ConfigurationError") == 1
    assert grew("beluga_activity_attempts_total", activity="fleet_flaky") == 3
    assert grew("beluga_activity_failures_total", activity="fleet_flaky") == 2
    assert grew("beluga_activity_failures_total", activity="fleet_refuse") == 1
    assert grew("beluga_activity_seconds_count", activity="fleet_flaky") == 3
    assert grew("beluga_activity_queue_seconds_count", activity="fleet_flaky") == 3
    assert grew("beluga_step_seconds_count", executor="celery") >= 5
    now = observed.metrics()
    assert now[("beluga_runs", (("status", "running"),))] == 0
    assert now[("beluga_runs", (("status", "completed"),))] >= 1
    assert now[("beluga_runs", (("status", "canceled"),))] >= 1
