"""Metrics, logs and traces from a real worker (prefork, two pool processes) on a fleet of its own:
`BELUGA_METRICS_PORT` serves what every pool process counted; each log line about a run names its
workflow id, run id and, for activities, seq and attempt; and the OpenTelemetry context of the client's
`execute` reaches every activity span, through the coordinator, a signal and retries.

Most workflows are started by name, without their code here; those of `tests.celery.metrics_workflows`
are imported by this process too, as a web app that shares the workers' code would: a client that has a
run's code takes its first step itself only while its own metrics are served, so that the served
metrics count every run exactly once either way."""

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

from beluga import metrics, workflow
from beluga.core.definitions import registry
from beluga.runs import new_run_state
from tests.celery import metrics_workflows  # noqa: F401  (this process has their code, as the worker)
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

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def grown(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """How much the samples of `name` whose labels include `labels` grew, summed."""
    return sum(value - before.get(key, 0.0) for key, value in after.items()
               if key[0] == name and set(labels.items()) <= set(key[1]))


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    assert "fleet_observed" not in registry.workflows, "the test process must not import tests.celery.workflows"
    tmp = tmp_path_factory.mktemp("observed")
    spans, port = tmp / "spans.jsonl", free_port()
    with redis_server() as url:
        imports = WORKER_IMPORTS + ",tests.celery.tracing_setup,tests.celery.metrics_workflows"
        env = fleet_env(url, BELUGA_IMPORTS=imports,
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
        return grown(observed.metrics(), before, name, **labels)

    _wait("the last attempt's metrics", lambda: grew("beluga_activity_attempts_total", activity="fleet_logged") == 1)
    assert grew("beluga_runs_started_total", workflow_type="fleet_observed") == 1
    assert grew("beluga_runs_completed_total", workflow_type="fleet_observed") == 1
    assert grew("beluga_runs_failed_total", workflow_type="fleet_refusing", status="failed",
                failure_type="ActivityError") == 1
    assert grew("beluga_runs_canceled_total", workflow_type="no_such_workflow") == 1
    assert grew("beluga_runs_stuck_total", workflow_type="no_such_workflow", reason="ConfigurationError") == 1
    assert grew("beluga_activity_attempts_total", activity="fleet_flaky") == 3
    assert grew("beluga_activity_failures_total", activity="fleet_flaky", failure_type="RuntimeError") == 2
    assert grew("beluga_activity_failures_total", activity="fleet_refuse", queue="default") == 1
    assert grew("beluga_activity_seconds_count", activity="fleet_flaky") == 3
    assert grew("beluga_activity_schedule_to_start_latency_seconds_count", activity="fleet_flaky") == 3
    assert grew("beluga_activity_schedule_to_close_latency_seconds_count", activity="fleet_flaky") == 1
    assert grew("beluga_step_seconds_count", executor="celery") >= 5
    now = observed.metrics()
    assert now[("beluga_runs", (("status", "running"),))] == 0
    assert now[("beluga_runs", (("status", "completed"),))] >= 1
    assert now[("beluga_runs", (("status", "canceled"),))] >= 1


# --- every run counted once, whichever process took its first step ----------------------------------------
MIX = (("metrics_done", 3), ("metrics_parked", 3), ("metrics_refused", 2), ("fleet_wait_signal", 2))
STARTED = sum(n for _, n in MIX)
IMPORTED = ("metrics_done", "metrics_parked", "metrics_refused")  # their code is in this process too


def _start_mix(ex: Any, tag: str) -> dict[str, list[str]]:
    """Start MIX's runs (the parked ones park at once: their first step records no event), wait until
    every first step is taken (each inbox empty), and return their ids by workflow type."""
    ids: dict[str, list[str]] = {}
    for workflow_type, n in MIX:
        for i in range(n):
            wid = f"{tag}-{workflow_type}-{i}-{uuid.uuid4().hex[:6]}"
            ex.execute(workflow_type, workflow.WorkflowOptions(id=wid, input=i))
            ids.setdefault(workflow_type, []).append(wid)
    inboxes = [ex.store.names.run(wid).inbox for group in ids.values() for wid in group]
    _wait("every first step", lambda: not any(ex.store.redis.llen(inbox) for inbox in inboxes))
    return ids


def _close_mix(ex: Any, ids: dict[str, list[str]]) -> None:
    """One parked run of each parked type signalled (it completes), the others terminated."""
    for workflow_type in ("metrics_parked", "fleet_wait_signal"):
        first, *rest = ids[workflow_type]
        ex.signal(first, workflow.Signal("go", 1))
        for wid in rest:
            ex.terminate(wid, "test over")
    for group in ids.values():
        for wid in group:
            _wait(f"run {wid} to close", lambda wid=wid: not ex.summary(wid).status.is_open)


def _check_mix(grew: Any) -> None:
    """What the served metrics say about one MIX, `grew(name, **labels)` summed over every endpoint."""
    for workflow_type, n in MIX:
        assert grew("beluga_runs_started_total", workflow_type=workflow_type) == n, workflow_type
    assert grew("beluga_runs_started_total") == STARTED
    assert grew("beluga_runs_completed_total", workflow_type="metrics_done") == 3
    assert grew("beluga_runs_completed_total", workflow_type="metrics_parked") == 1
    assert grew("beluga_runs_canceled_total", workflow_type="metrics_parked") == 2
    assert grew("beluga_runs_canceled_total", workflow_type="fleet_wait_signal") == 1
    assert grew("beluga_runs_failed_total", workflow_type="metrics_refused", status="failed",
                failure_type="ApplicationError") == 2
    ended = "beluga_workflow_endtoend_latency_seconds_count"
    assert grew(ended, workflow_type="metrics_done", outcome="completed") == 3
    assert grew(ended, workflow_type="metrics_parked", outcome="canceled") == 2
    assert grew(ended, workflow_type="metrics_refused", outcome="failed") == 2
    assert grew(ended) == STARTED
    for name in ("beluga_activity_schedule_to_start_latency_seconds_count",
                 "beluga_activity_schedule_to_close_latency_seconds_count", "beluga_activity_attempts_total"):
        assert grew(name, activity="metrics_echo", queue="default") == 3, name


def test_runs_are_counted_once_by_the_worker_when_the_client_serves_no_metrics(
        observed: Observed, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that has the code but serves no metrics leaves every first step to the worker."""
    monkeypatch.setattr(metrics, "_served", {})
    assert not metrics.shown_here()
    ex = observed.executor()
    before = observed.metrics()
    ids = _start_mix(ex, "unserved")

    def grew(name: str, **labels: str) -> float:
        return grown(observed.metrics(), before, name, **labels)

    # counted by the worker as their first steps are recorded, the parked runs too, before any signal
    _wait("every start counted", lambda: grew("beluga_runs_started_total") == STARTED)
    _close_mix(ex, ids)
    _wait("every close counted", lambda: grew("beluga_workflow_endtoend_latency_seconds_count") == STARTED)
    _check_mix(grew)
    _wait("the worker's slots free again", lambda: observed.metrics()[("beluga_worker_task_slots_used", ())] == 0)
    assert observed.metrics()[("beluga_worker_task_slots_free", ())] == 2  # -c 2


def test_runs_are_counted_once_across_a_serving_client_and_the_worker(observed: Observed) -> None:
    """A client that has the code and serves its metrics takes its runs' first steps (an eager start) and
    counts them; the worker counts the rest: together, each run once."""
    port = free_port()
    assert metrics.serve(port, addr="127.0.0.1")
    ex = observed.executor()
    before, before_here = observed.metrics(), scrape(port)
    ids = _start_mix(ex, "served")

    def grew(name: str, **labels: str) -> float:
        return grown(observed.metrics(), before, name, **labels) + grown(scrape(port), before_here, name, **labels)

    _wait("every start counted", lambda: grew("beluga_runs_started_total") == STARTED)
    for workflow_type, n in MIX:  # the eager starts counted here, the others by the worker
        here = grown(scrape(port), before_here, "beluga_runs_started_total", workflow_type=workflow_type)
        assert here == (n if workflow_type in IMPORTED else 0), workflow_type
    _close_mix(ex, ids)
    _wait("every close counted", lambda: grew("beluga_workflow_endtoend_latency_seconds_count") == STARTED)
    _check_mix(grew)
