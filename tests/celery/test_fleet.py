"""The celery executor against a real Redis and real `celery worker` processes."""

from __future__ import annotations

import time
import uuid

import pytest

from beluga import workflow
from beluga.core.records import EventType
from tests.fleet import wait_progress


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_order_workflow_end_to_end(fleet) -> None:
    ex = fleet.executor()
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=_id("order"), input="ORD-1"))
    wait_progress(ex, handle.id, "awaiting approval")
    assert handle.status() is workflow.WorkflowStatus.RUNNING
    ex.signal(handle.id, workflow.Signal("approve", "approved"))
    assert handle.result(timeout=20) == "order ORD-1 processed"
    types = [e.type for e in ex.describe(handle.id).history]
    assert types == ["workflow_started", "activity_scheduled", "activity_started", "activity_completed",
                     "signal_received", "activity_scheduled", "activity_started", "activity_completed",
                     "workflow_completed"]
    assert ex.query(handle.id, "status") is workflow.WorkflowStatus.COMPLETED
    assert ex.query(handle.id, "result") == "order ORD-1 processed"


def test_rejected_order_fails_with_cause(fleet) -> None:
    ex = fleet.executor()
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=_id("reject"), input="ORD-2"))
    wait_progress(ex, handle.id, "awaiting approval")
    ex.signal(handle.id, workflow.Signal("approve", "no"))
    with pytest.raises(workflow.WorkflowFailed) as err:
        handle.result(timeout=20)
    assert "order rejected" in str(err.value.cause)
    with pytest.raises(workflow.WorkflowNotRunning):
        ex.signal(handle.id, workflow.Signal("approve", "approved"))


def test_retries_map_onto_celery_retry(fleet) -> None:
    ex = fleet.executor()
    handle = ex.execute("fleet_retrying", workflow.WorkflowOptions(id=_id("retry")))
    assert handle.result(timeout=30) == 3
    history = ex.describe(handle.id).history
    started = [e.attrs["attempt"] for e in history if e.type == EventType.ACTIVITY_STARTED]
    failed = [(e.attrs["attempt"], e.attrs["retry_in"] is not None) for e in history
              if e.type == EventType.ACTIVITY_FAILED]
    assert started == [1, 2, 3]
    assert failed == [(1, True), (2, True)]
    assert all(0 < e.attrs["retry_in"] <= 0.2 for e in history if e.type == EventType.ACTIVITY_FAILED)


def test_durable_timer(fleet) -> None:
    ex = fleet.executor()
    handle = ex.execute("fleet_sleeper", workflow.WorkflowOptions(id=_id("sleep"), input=1.0))
    assert handle.result(timeout=20) >= 1.0


def test_signal_and_cancel_errors(fleet) -> None:
    ex = fleet.executor()
    with pytest.raises(workflow.WorkflowNotFound):
        ex.signal("no-such-run", workflow.Signal("go"))
    with pytest.raises(workflow.WorkflowNotFound):
        ex.cancel("no-such-run")
    with pytest.raises(workflow.WorkflowNotFound):
        ex.query("no-such-run", "status")


def test_query_handler_answered_by_a_worker(fleet) -> None:
    ex = fleet.executor()
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=_id("query"), input="ORD-3"))
    wait_progress(ex, handle.id, "awaiting approval")
    with pytest.raises(workflow.QueryNotFound):
        ex.query(handle.id, "nope")
    ex.cancel(handle.id)
    with pytest.raises(workflow.WorkflowCancelled):
        handle.result(timeout=20)
    assert handle.status() is workflow.WorkflowStatus.CANCELED


def test_duplicate_id_and_bad_payloads_are_refused_at_the_call(fleet) -> None:
    ex = fleet.executor(max_payload_bytes=1024)
    wid = _id("dup")
    ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=wid))
    with pytest.raises(workflow.WorkflowAlreadyStarted):
        ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=wid))
    with pytest.raises(workflow.SerializationError):
        ex.signal(wid, workflow.Signal("go", object()))
    with pytest.raises(workflow.SerializationError, match="limit"):
        ex.signal(wid, workflow.Signal("go", "x" * 5000))
    with pytest.raises(workflow.SerializationError):
        ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=_id("bad"), input=lambda: 1))
    assert ex.describe(wid).history[-1].type != EventType.SIGNAL_RECEIVED
    ex.signal(wid, workflow.Signal("go", "now"))
    assert ex.get_handle(wid).result(timeout=20) == "got now"


def test_unknown_workflow_name_is_refused_at_the_call(fleet) -> None:
    """The client has no workflow code; the names the workers announced catch a misspelt one."""
    ex = fleet.executor()
    with pytest.raises(workflow.ConfigurationError, match="no workflow registered as 'no_such_workflow'"):
        ex.execute("no_such_workflow", workflow.WorkflowOptions(id=_id("unknown")))


def test_activity_without_a_capable_worker_waits_then_continues(fleet) -> None:
    """No running worker has `fleet_not_everywhere`: its attempt waits in the activity's own queue (and
    the logs say why) until a worker that imports its module joins the fleet and consumes that queue."""
    ex = fleet.executor()
    handle = ex.execute("fleet_calls_missing", workflow.WorkflowOptions(id=_id("missing")))
    time.sleep(1.5)
    assert handle.status() is workflow.WorkflowStatus.RUNNING
    assert any("no worker has announced activity 'fleet_not_everywhere'" in w.log() for w in fleet.workers)
    capable = fleet.start_worker(f"capable-{uuid.uuid4().hex[:4]}",
                                 BELUGA_IMPORTS="beluga.demo,tests.celery.workflows,tests.celery.extra_activities")
    capable.wait_ready()
    try:
        assert handle.result(timeout=30) == "done x"
    finally:
        capable.stop()
        fleet.workers.remove(capable)
