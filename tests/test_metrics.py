"""Prometheus metrics of the in-process executor, served on its `metrics_port` (the fleet's workers:
tests/celery/test_observability.py), and the Grafana dashboard shipped in docs/ checked against them."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from beluga import metrics, workflow
from beluga.stores import SQLiteStore
from tests.executors import workflows as W
from tests.executors.helpers import eventually
from tests.fleet import free_port

DOCS = Path(__file__).resolve().parent.parent / "docs"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _grown(after: Samples, before: Samples, name: str, **labels: str) -> float:
    """How much the samples of `name` whose labels include `labels` grew, summed."""
    return sum(value - before.get(key, 0.0) for key, value in after.items()
               if key[0] == name and set(labels.items()) <= set(key[1]))


_held = threading.Event()


@workflow.activity(queue="metrics-q")
def metrics_held(_: object) -> str:
    """Runs until the test lets it go (the test sees a slot taken meanwhile)."""
    assert _held.wait(30)
    return "let go"


@workflow.defn(name="metrics_flaky")
def metrics_flaky(ctx: workflow.WorkflowContext, spec: dict) -> dict:
    return ctx.execute_activity(W.flaky, spec, retry=W.fast_retry(3))


@workflow.defn(name="metrics_holding")
def metrics_holding(ctx: workflow.WorkflowContext, _: object = None) -> str:
    return ctx.execute_activity(metrics_held, None)


@workflow.defn(name="metrics_parent")
def metrics_parent(ctx: workflow.WorkflowContext, value: object) -> object:
    return ctx.execute_child_workflow(W.wf_echo, value)


def test_in_process_executor_counts_each_run_once(tmp_path: Path) -> None:
    """Every run counted started once where it is created (a child too), whether its first step records
    events or it parks at once; and each close, activity and slot counted as it happened."""
    port = free_port()
    store = SQLiteStore(str(tmp_path / "m.db"))
    ex = workflow.new("default", workflow.Config(store=store, extra={"metrics_port": port, "workers": 4}))
    _held.clear()
    try:
        before = _scrape(port)
        assert ex.execute(W.wf_echo, workflow.WorkflowOptions(id="m-1", input=5)).result(timeout=10) == 5
        assert ex.execute(metrics_parent, workflow.WorkflowOptions(id="m-2", input=6)).result(timeout=10) == 6
        spec = {"key": "metrics-flaky", "fail_times": 1}
        ex.execute(metrics_flaky, workflow.WorkflowOptions(id="m-3", input=spec)).result(timeout=10)
        for wid in ("m-4", "m-5", "m-6"):   # each parks at once: its first step records no event
            ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id=wid, input="go"))
        ex.execute(W.wf_fail, workflow.WorkflowOptions(id="m-7", input="no"))
        holding = ex.execute(metrics_holding, workflow.WorkflowOptions(id="m-8"))

        def now() -> Samples:
            return _scrape(port)

        def grew(name: str, **labels: str) -> float:
            return _grown(now(), before, name, **labels)

        eventually(lambda: grew("beluga_worker_task_slots_used") == 1, timeout=10, what="a slot taken")
        assert grew("beluga_worker_task_slots_free") == -1
        # counted as created, before any signal
        assert grew("beluga_runs_started_total", workflow_type="wf_wait_signal") == 3
        _held.set()
        assert holding.result(timeout=10) == "let go"
        ex.signal("m-4", workflow.Signal("go", 1))
        ex.cancel("m-5")
        ex.terminate("m-6", "test over")
        for wid in ("m-4", "m-5", "m-6", "m-7"):
            ex.wait_closed(wid, 10)
        after = now()
    finally:
        _held.set()
        ex.close()

    def grew_by(name: str, **labels: str) -> float:
        return _grown(after, before, name, **labels)

    started = {"wf_echo": 2, "metrics_parent": 1, "metrics_flaky": 1, "wf_wait_signal": 3, "wf_fail": 1,
               "metrics_holding": 1}
    for workflow_type, n in started.items():
        assert grew_by("beluga_runs_started_total", workflow_type=workflow_type) == n, workflow_type
    assert grew_by("beluga_runs_completed_total", workflow_type="wf_echo") == 2
    assert grew_by("beluga_runs_completed_total", workflow_type="wf_wait_signal") == 1
    assert grew_by("beluga_runs_canceled_total", workflow_type="wf_wait_signal") == 2
    assert grew_by("beluga_runs_failed_total", workflow_type="wf_fail", status="failed",
                   failure_type="ApplicationError") == 1
    ended = "beluga_workflow_endtoend_latency_seconds_count"
    assert grew_by(ended, workflow_type="wf_wait_signal", outcome="canceled") == 2
    assert grew_by(ended, workflow_type="wf_wait_signal", outcome="completed") == 1
    assert grew_by(ended, workflow_type="wf_fail", outcome="failed") == 1
    assert sum(grew_by(ended, workflow_type=t) for t in started) == sum(started.values())
    assert grew_by("beluga_workflow_replay_latency_seconds_count", workflow_type="wf_echo") >= 2

    assert grew_by("beluga_activity_attempts_total", activity="echo", queue="default") == 2
    assert grew_by("beluga_activity_attempts_total", activity="flaky", queue="default") == 2
    assert grew_by("beluga_activity_failures_total", activity="flaky", queue="default", failure_type="ValueError") == 1
    assert grew_by("beluga_activity_attempts_total", activity="metrics_held", queue="metrics-q") == 1
    assert grew_by("beluga_activity_seconds_count", activity="echo") == 2
    assert grew_by("beluga_activity_schedule_to_start_latency_seconds_count", activity="flaky") == 2
    # one schedule-to-close per activity, across its attempts
    assert grew_by("beluga_activity_schedule_to_close_latency_seconds_count", activity="flaky") == 1
    assert grew_by("beluga_activity_schedule_to_close_latency_seconds_count", activity="echo") == 2
    assert grew_by("beluga_activity_schedule_to_close_latency_seconds_count", activity="metrics_held",
                   queue="metrics-q") == 1
    assert grew_by("beluga_worker_task_slots_used") == 0 and grew_by("beluga_worker_task_slots_free") == 0
    assert grew_by("beluga_step_seconds_count", executor="default") >= 2
    assert after[("beluga_runs", (("status", "completed"),))] >= 2    # from the store, when scraped


# --- the dashboard ---------------------------------------------------------------------------------------
def _expressions(node: Any) -> list[str]:
    """Every PromQL expression of a Grafana dashboard: its panels' targets and its templating queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, (str, dict)):
                found.extend(_expressions({"expr": value.get("query")}) if isinstance(value, dict) else [value])
            else:
                found.extend(_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_expressions(item))
    return found


def test_the_grafana_dashboard_names_only_metrics_beluga_exports() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    expressions = _expressions(dashboard)
    assert len(expressions) >= 10
    exported = metrics.exported_names()
    named = {name for expr in expressions for name in re.findall(r"\bbeluga_[a-z_]+", expr)}
    assert named and named <= exported, sorted(named - exported)
    # and it shows every metric Beluga has (each family by one of its series)
    families = {re.sub(r"(_total|_bucket|_sum|_count)$", "", n) for n in exported}
    shown = {re.sub(r"(_total|_bucket|_sum|_count)$", "", n) for n in named}
    assert families - shown == set()


def test_the_docs_list_every_metric() -> None:
    text = (DOCS / "observability.md").read_text()
    listed = set(re.findall(r"^\| `(beluga_[a-z_]+)`", text, re.M))
    families = {re.sub(r"(_bucket|_sum|_count)$", "", n) for n in metrics.exported_names()}
    assert listed == families
