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
from beluga.stores.temporal import visibility_query
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

    store.delete(done)  # requested: Temporal deletes in the background (not yet seen to finish on the dev server)
    store.delete(f"nothing-{tag}")  # an unknown id is no error


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


def test_without_temporalio_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "temporalio", None)
    for module in ("beluga.stores.temporal", "beluga.executors.temporal", "beluga.executors._temporal_workflow"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(workflow.ConfigurationError, match=r"pip install 'beluga\[temporal\]'"):
        workflow.new_store("temporal")
