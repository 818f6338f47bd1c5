"""What is particular to the `temporal` executor, against the session's real Temporal dev server: the
worker command, non-determinism reported by Temporal surfacing as `NonDeterminismError`, the error that
names the extra. The shared contract suite runs against it too (`conftest.BACKENDS["temporal"]`)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from beluga import workflow
from beluga.testing import replay
from tests.conftest import ROOT
from tests.executors import workflows as W
from tests.executors.helpers import eventually
from tests.executors.test_nondeterminism import changed_registry


@pytest.fixture
def make(temporal_server: Any) -> Iterator[Any]:
    made: list[workflow.DurableExecutor] = []
    queue = f"beluga-t-{uuid.uuid4().hex[:10]}"

    def new(**extra: Any) -> workflow.DurableExecutor:
        ex = workflow.new("temporal", workflow.Config(extra={"target": temporal_server.target,
                                                             "task_queue": queue, **extra}))
        made.append(ex)
        return ex

    yield new
    for ex in made:
        ex.close()


def test_changed_code_is_reported_as_non_determinism_and_the_run_left_open(make: Any) -> None:
    wid = f"nd-{uuid.uuid4().hex[:8]}"
    a = make(worker=True)
    a.execute(W.wf_versioned, workflow.WorkflowOptions(id=wid, input=1))
    eventually(lambda: "activity_completed" in [ev.type for ev in a.describe(wid).history])
    a.close()

    b = make(worker=True, registry=changed_registry())  # the history has `echo` where the code now sleeps
    b.signal(wid, workflow.Signal("go", "on"))
    state = eventually(lambda: (s := b.summary(wid)).error and s, timeout=20)
    assert state.status is workflow.WorkflowStatus.RUNNING  # left open, untouched, for matching code
    assert state.error["type"] == "NonDeterminismError"
    assert "Nondeterminism" in state.error["message"]  # Temporal's words: a timer where it recorded an activity
    assert "ActivityTaskScheduled" in state.error["message"]
    assert b.describe(wid).error["type"] == "NonDeterminismError"  # as the other executors report it
    with pytest.raises(TimeoutError):
        b.get_handle(wid).result(timeout=0.5)
    b.terminate(wid, "test over")


def test_a_run_whose_code_the_worker_lacks_is_reported_through_describe_and_left_open(make: Any) -> None:
    wid = f"missing-{uuid.uuid4().hex[:8]}"
    client = make(query_timeout=1)  # starts by name; the only worker on the queue has no workflow code
    make(worker=True, registry=workflow.Registry())
    client.execute("wf_echo", workflow.WorkflowOptions(id=wid, input=1))
    state = eventually(lambda: (s := client.describe(wid)).error and s, timeout=20)
    assert state.status is workflow.WorkflowStatus.RUNNING
    assert state.error["type"] == "ConfigurationError" and "wf_echo" in state.error["message"]
    assert [ev.type for ev in state.history] == ["workflow_started"]
    client.terminate(wid, "test over")


def test_the_beluga_history_of_a_run_replays_on_the_core(make: Any) -> None:
    """Temporal retries an activity on its server: the history holds its one final outcome, at the attempt
    that gave it. A signal racing the close is kept before the close, and the histories replay."""
    ex = make(worker=True)
    wid = f"retry-{uuid.uuid4().hex[:8]}"
    spec = {"key": wid, "fail_times": 2, "max_attempts": 5}
    assert ex.execute(W.wf_retry, workflow.WorkflowOptions(id=wid, input=spec)).result(timeout=30)["attempt"] == 3
    states = [ex.describe(wid)]
    attempts = [(ev.type, ev.attrs["attempt"]) for ev in states[0].history if "attempt" in ev.attrs]
    assert attempts == [("activity_started", 1), ("activity_completed", 3)]
    for _ in range(3):
        wid = f"race-{uuid.uuid4().hex[:8]}"
        handle = ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id=wid, input="go"))
        for payload in ("first", "second"):
            try:
                ex.signal(wid, workflow.Signal("go", payload))
            except workflow.WorkflowNotRunning:
                pass
        assert handle.result(timeout=30) == "first"
        states.append(ex.describe(wid))
    assert all(r.ok for r in replay(*states))


def test_temporal_worker_command_runs_the_imported_workflows(make: Any, temporal_server: Any) -> None:
    queue = f"beluga-cmd-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BELUGA_TEMPORAL_TASK_QUEUE": queue}
    worker = subprocess.Popen([sys.executable, "-m", "beluga", "temporal-worker", "--imports",
                               "tests.executors.workflows", "--target", temporal_server.target], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = make(task_queue=queue)  # a client only: it imports no workflow code to start one by name
        handle = client.execute("wf_echo", workflow.WorkflowOptions(input={"order": 7}))
        assert handle.result(timeout=30) == {"order": 7}
        assert client.query(handle.id, "status") is workflow.WorkflowStatus.COMPLETED
    finally:
        worker.terminate()
        output = worker.communicate(timeout=20)[0]
    assert f"task queue {queue!r}" in output and "tests.executors.workflows" in output


def test_without_temporalio_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("temporalio", "temporalio.client", "temporalio.worker"):
        monkeypatch.setitem(sys.modules, module, None)
    for module in ("beluga.temporal.executor", "beluga.temporal.workflow"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(workflow.ConfigurationError, match=r"pip install 'beluga-workflows\[temporal\]'"):
        workflow.new("temporal")
    assert "temporal" in workflow.list_providers()
