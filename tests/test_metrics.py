"""Prometheus metrics of the in-process executor, served on its `metrics_port` (the fleet's workers:
tests/celery/test_observability.py)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from beluga import workflow
from beluga.stores import SQLiteStore
from tests.executors import workflows as W
from tests.fleet import free_port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@workflow.defn(name="metrics_flaky")
def metrics_flaky(ctx: workflow.WorkflowContext, spec: dict) -> dict:
    return ctx.execute_activity(W.flaky, spec, retry=W.fast_retry(3))


def test_in_process_executor_serves_its_metrics(tmp_path) -> None:
    port = free_port()
    store = SQLiteStore(str(tmp_path / "m.db"))
    ex = workflow.new("default", workflow.Config(store=store, extra={"metrics_port": port}))
    try:
        before = _scrape(port)
        assert ex.execute(W.wf_echo, workflow.WorkflowOptions(id="m-1", input=5)).result(timeout=10) == 5
        spec = {"key": "metrics-flaky", "fail_times": 1}
        ex.execute(metrics_flaky, workflow.WorkflowOptions(id="m-2", input=spec)).result(timeout=10)
        ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id="m-3", input="go"))
        ex.cancel("m-3")
        assert ex.wait_closed("m-3", 10).status is workflow.WorkflowStatus.CANCELED
        after = _scrape(port)
    finally:
        ex.close()

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("beluga_runs_started_total", workflow_type="wf_echo") == 1
    assert grew("beluga_runs_completed_total", workflow_type="wf_echo") == 1
    assert grew("beluga_activity_attempts_total", activity="echo") >= 1
    assert grew("beluga_activity_seconds_count", activity="echo") >= 1
    assert grew("beluga_activity_queue_seconds_count", activity="echo") >= 1
    assert grew("beluga_activity_attempts_total", activity="flaky") == 2
    assert grew("beluga_activity_failures_total", activity="flaky") == 1
    assert grew("beluga_runs_canceled_total", workflow_type="wf_wait_signal") == 1
    assert grew("beluga_step_seconds_count", executor="default") >= 2
    assert after[("beluga_runs", (("status", "completed"),))] >= 2    # from the store, when scraped
