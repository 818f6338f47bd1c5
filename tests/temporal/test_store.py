"""The `temporal` visibility store against the session's real Temporal dev server: it reads (and deletes)
the runs the `temporal` executor put there; Temporal's visibility is eventually consistent, so listings are
polled."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from beluga import workflow
from beluga.temporal.store import visibility_query
from tests.executors import workflows as W
from tests.executors.helpers import eventually

Status = workflow.WorkflowStatus


@pytest.fixture
def setup(temporal_server: Any) -> Iterator[tuple[workflow.DurableExecutor, workflow.WorkflowStore]]:
    ex = workflow.new("temporal", workflow.Config(extra={"target": temporal_server.target, "worker": True,
                                                         "task_queue": f"beluga-s-{uuid.uuid4().hex[:10]}"}))
    store = workflow.new_store("temporal", target=temporal_server.target)
    yield ex, store
    store.close()
    ex.close()


def test_load_list_by_status_and_type_and_delete(setup: Any) -> None:
    ex, store = setup
    tag = uuid.uuid4().hex[:8]
    done, parked = f"vis-done-{tag}", f"vis-parked-{tag}"
    ex.execute(W.wf_echo, workflow.WorkflowOptions(id=done, input=tag)).result(timeout=10)
    ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id=parked, input="go"))

    state = store.load(done)
    assert state is not None and state.status is Status.COMPLETED and state.result == tag
    assert [ev.type for ev in state.history][0] == "workflow_started" and state.history[-1].type == "workflow_completed"
    assert store.load(f"nothing-{tag}") is None

    def listed(**f: Any) -> set[str]:
        return {s.workflow_id for s in store.list(workflow.WorkflowFilter(limit=1000, **f))}

    eventually(lambda: done in listed(status=Status.COMPLETED, workflow_type="wf_echo"), timeout=10)
    eventually(lambda: parked in listed(status=Status.RUNNING, workflow_type="wf_wait_signal"), timeout=10)
    assert done not in listed(status=Status.RUNNING)
    assert parked not in listed(workflow_type="wf_echo")

    ex.terminate(parked, "test over")
    eventually(lambda: parked in listed(status=Status.CANCELED), timeout=10)  # Temporal's Terminated

    # Temporal deletes in the background: a closed run once the server has saved its queues' progress past
    # the close (every second on the test server, tests/servers.py; 30 s by default); a running one at once.
    running = f"vis-running-{tag}"
    ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id=running, input="go"))
    assert store.load(running) is not None
    for wid in (done, parked, running):
        store.delete(wid)
    for wid in (done, parked, running):
        eventually(lambda: store.load(wid) is None, timeout=20)  # noqa: B023 - used within the iteration
        with pytest.raises(workflow.WorkflowNotFound):
            ex.describe(wid)
        assert ex._run(_history_length(ex, wid)) == 0  # type: ignore[attr-defined]
    eventually(lambda: not {done, parked, running} & listed(), timeout=20)
    store.delete(done)  # deleted already: no error
    store.delete(f"nothing-{tag}")  # an unknown id is no error


async def _history_length(ex: Any, wid: str) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return len([ev async for ev in ex.client.get_workflow_handle(wid).fetch_history_events()])
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND
        return 0


def test_delete_removes_every_run_of_a_continue_as_new_chain(setup: Any) -> None:
    ex, store = setup
    wid = f"vis-chain-{uuid.uuid4().hex[:8]}"
    ex.execute(W.wf_continue, workflow.WorkflowOptions(id=wid, input=1)).result(timeout=10)  # runs 1, 2 and 3

    def runs() -> int:
        return len(ex._run(_runs(ex, wid)))  # type: ignore[attr-defined]

    eventually(lambda: runs() == 3, timeout=10)
    store.delete(wid)
    eventually(lambda: runs() == 0 and store.load(wid) is None, timeout=20)


async def _runs(ex: Any, wid: str) -> list[str]:
    return [r.run_id async for r in ex.client.list_workflows(f"WorkflowId = '{wid}'")]


def test_writes_are_refused_with_the_reason(setup: Any) -> None:
    _, store = setup
    with pytest.raises(workflow.ConfigurationError, match="Temporal owns the histories"):
        store.save(workflow.WorkflowState("x", "r", "wf_echo"))


@pytest.mark.parametrize("status, type, expected", [
    (None, None, ""),
    (Status.RUNNING, None, "(ExecutionStatus = 'Running')"),
    (Status.CANCELED, "orders", "WorkflowType = 'orders' AND (ExecutionStatus = 'Canceled' OR "
                                "ExecutionStatus = 'Terminated')"),
    (None, "it's", "WorkflowType = 'it\\'s'"),
])
def test_visibility_query(status: Any, type: Any, expected: str) -> None:
    assert visibility_query(workflow.WorkflowFilter(status=status, workflow_type=type)) == expected


def test_visibility_query_of_a_prefix_and_cursors() -> None:
    f = workflow.WorkflowFilter(id_prefix="ord'", after=(0.5, "x"), before=(0.25, "y"))
    assert visibility_query(f) == ("WorkflowId STARTS_WITH 'ord\\'' AND "
                                   "StartTime <= '1970-01-01T00:00:00.500000+00:00' AND "
                                   "StartTime >= '1970-01-01T00:00:00.250000+00:00'")


def test_without_temporalio_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "temporalio", None)
    for module in ("beluga.temporal.store", "beluga.temporal.executor", "beluga.temporal.workflow"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(workflow.ConfigurationError, match=r"pip install 'beluga-workflows\[temporal\]'"):
        workflow.new_store("temporal")
