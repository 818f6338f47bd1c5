"""A client's calls take effect once or fail, and say which: retried with one request id while Redis
cannot be reached, answered from a durable write even when the broker is down (the sweeper wakes the
run), refused on a closed run instead of accepted and lost."""

from __future__ import annotations

import time
import uuid

import pytest

from beluga import workflow
from tests.executors import workflows as W
from tests.fleet import free_port
from tests.timing import bounded_by


def test_execute_with_the_same_request_id_returns_the_same_run(fleet) -> None:
    ex = fleet.executor()
    wid = f"req-{uuid.uuid4().hex[:8]}"
    first = ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go", request_id="r-1"))
    again = ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go", request_id="r-1"))
    assert again.run_id == first.run_id
    with pytest.raises(workflow.WorkflowAlreadyStarted):
        ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go", request_id="r-2"))
    ex.signal(wid, workflow.Signal("go", "once", request_id="s-1"))
    ex.signal(wid, workflow.Signal("go", "once", request_id="s-1"))  # a retry of the same call
    assert first.result(timeout=20) == "once"
    recorded = [e for e in ex.describe(wid).history if e.type == "signal_received"]
    assert [e.attrs["payload"] for e in recorded] == ["once"]
    # a retried signal whose first try took effect is not refused though the run has closed since
    ex.signal(wid, workflow.Signal("go", "once", request_id="s-1"))
    with pytest.raises(workflow.WorkflowNotRunning):
        ex.signal(wid, workflow.Signal("go", "late", request_id="s-2"))


def test_a_broker_outage_does_not_fail_calls_that_took_effect(fleet) -> None:
    """The client's broker is unreachable; Redis is not. The run is created and its inputs recorded,
    and the workers' sweeper wakes it (their broker works)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    ex = workflow.new("celery", workflow.Config(extra={"broker_url": dead, "redis_url": fleet.url}))
    wid = f"nobroker-{uuid.uuid4().hex[:8]}"
    handle = ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go"))
    ex.signal(wid, workflow.Signal("go", "through the sweeper"))
    assert handle.result(timeout=30) == "through the sweeper"


def test_redis_unreachable_fails_in_bounded_time_saying_nothing_took_effect() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    retry = 1.0  # the default, 10 s, is past the bound: the call kept to the setting
    ex = workflow.new("celery", workflow.Config(extra={"broker_url": dead, "redis_url": dead,
                                                       "client_retry_seconds": retry}))
    started = time.monotonic()
    with pytest.raises(workflow.ServiceUnavailable) as err:
        ex.execute(W.wf_echo, workflow.WorkflowOptions(id="never", input=1, request_id="r-x"))
    assert 0.9 * retry <= time.monotonic() - started < bounded_by(retry)
    assert err.value.may_have_taken_effect is False and err.value.request_id == "r-x"
    assert "did not take effect" in str(err.value)
    with pytest.raises(workflow.ServiceUnavailable):
        ex.signal("never", workflow.Signal("go"))


def test_signal_many_retried_delivers_each_once_and_its_runs_wake_without_the_broker(fleet) -> None:
    """signal_many's pipelined pushes keep each signal's request id: the same batch sent again (a caller's
    retry after an outage) records each signal once. With the client's broker down, the wakes it would
    send are lost; the runs' inboxes are dirty, and the workers' sweeper wakes them."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    ex = fleet.executor()
    cut_off = workflow.new("celery", workflow.Config(extra={"broker_url": dead, "redis_url": fleet.url}))
    handles = [ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=f"many-{uuid.uuid4().hex[:8]}", input="go"))
               for _ in range(3)]
    batch = [(h.id, workflow.Signal("go", h.id, request_id=f"s-{h.id}")) for h in handles]
    assert cut_off.signal_many(batch) == [None, None, None]
    assert cut_off.signal_many(batch) == [None, None, None]  # the retry of the same call
    for h in handles:
        assert h.result(timeout=30) == h.id
        recorded = [e.attrs["payload"] for e in ex.describe(h.id).history if e.type == "signal_received"]
        assert recorded == [h.id]
