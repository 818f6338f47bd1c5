"""The in-process executor on the provider stores, against their real servers: the order workflow end to
end, and a driving process killed with SIGKILL (parked on a signal, mid-activity, on a durable timer)
whose run a new executor on the same store carries on, running no completed activity twice — the
SQLite crash tests of tests/executors/test_crash_recovery.py, on NATS and on Kafka."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.demo import orders
from tests.executors import workflows as W  # noqa: F401  (the new executor runs these)
from tests.executors.helpers import park_then_kill


@pytest.fixture(params=["nats", "kafka", "dapr"])
def store_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    prefix = f"x{uuid.uuid4().hex[:8]}"
    if request.param == "nats":
        return {"name": "nats", "settings": {"url": request.getfixturevalue("nats_url"), "prefix": prefix}}
    if request.param == "kafka":
        return {"name": "kafka", "settings": {"bootstrap_servers": request.getfixturevalue("kafka_bootstrap"),
                                              "prefix": prefix}}
    return {"name": "dapr", "settings": {"url": request.getfixturevalue("dapr_url"), "prefix": prefix}}


@pytest.fixture
def executors() -> Iterator[Callable[[dict[str, Any]], workflow.DurableExecutor]]:
    made: list[workflow.DurableExecutor] = []
    stores: list[workflow.WorkflowStore] = []

    def new(spec: dict[str, Any]) -> workflow.DurableExecutor:
        store = workflow.new_store(spec["name"], **spec["settings"])
        stores.append(store)
        ex = workflow.new("default", workflow.Config(store=store))
        made.append(ex)
        return ex

    yield new
    for ex in made:
        ex.close()
    for store in stores:
        store.close()


def test_order_workflow_end_to_end(store_spec: dict[str, Any], executors: Callable[..., Any]) -> None:
    ex = executors(store_spec)
    handle = ex.execute(orders.order_workflow, workflow.WorkflowOptions(id="order-456", input="ORD-456"))
    deadline = time.monotonic() + 10
    while True:
        try:
            if ex.query("order-456", "progress") == "awaiting approval":
                break
        except workflow.QueryNotFound:
            pass  # the handler is set once the first activity is done
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ex.signal("order-456", workflow.Signal("approve", "approved"))
    assert handle.result(timeout=10) == "order ORD-456 processed"
    again = executors(store_spec)  # a new client reads the run from the server
    state = again.describe("order-456")
    assert state.status is workflow.WorkflowStatus.COMPLETED
    types = [ev.type for ev in state.history]
    assert types.count("activity_completed") == 2 and "signal_received" in types
    assert types[-1] == "workflow_completed"


@pytest.fixture(params=["nats", "kafka"])
def crash_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    if request.param == "nats":
        return {"name": "nats", "settings": {"url": request.getfixturevalue("nats_url"), "prefix": prefix}}
    return {"name": "kafka", "settings": {"bootstrap_servers": request.getfixturevalue("kafka_bootstrap"),
                                          "prefix": prefix}}


def test_killed_while_parked_on_a_signal(crash_spec: dict[str, Any], tmp_path: Path, executors: Any) -> None:
    effects = tmp_path / "effects.txt"
    park_then_kill(json.dumps(crash_spec), "signal", "crash-signal", {"path": str(effects)})
    assert effects.read_text().splitlines() == ["before signal"]

    ex = executors(crash_spec)
    assert ex.get_handle("crash-signal").status() is workflow.WorkflowStatus.RUNNING
    ex.signal("crash-signal", workflow.Signal("go", "approved"))
    assert ex.get_handle("crash-signal").result(timeout=10) == "approved"
    assert effects.read_text().splitlines() == ["before signal", "after signal"]  # each ran once


def test_killed_while_an_activity_runs(crash_spec: dict[str, Any], tmp_path: Path, executors: Any) -> None:
    effects = tmp_path / "effects.txt"
    park_then_kill(json.dumps(crash_spec), "activity", "crash-activity", {"path": str(effects)})
    (started,) = effects.read_text().splitlines()
    key = started.split()[2]

    ex = executors(crash_spec)
    assert ex.get_handle("crash-activity").result(timeout=10) == key  # re-run, same idempotency key
    lines = effects.read_text().splitlines()
    assert len(lines) == 3 and lines[0] == started
    assert lines[2] == "done " + lines[1].removeprefix("started ")
    assert [ev.type for ev in ex.describe("crash-activity").history].count("activity_completed") == 1


def test_killed_while_parked_on_a_durable_timer(crash_spec: dict[str, Any], executors: Any) -> None:
    park_then_kill(json.dumps(crash_spec), "timer", "crash-timer", 1.5)
    store = workflow.new_store(crash_spec["name"], **crash_spec["settings"])
    (timer,) = [ev for ev in store.history("crash-timer") if ev.type == "timer_started"]
    store.close()
    fire_at = timer.attrs["fire_at"]

    ex = executors(crash_spec)
    woke_at = ex.get_handle("crash-timer").result(timeout=10)
    done = time.time()
    assert woke_at >= fire_at  # not before the original deadline
    assert done < fire_at + 1.0, "the new executor waited the full duration again"
