"""Flower, started with `celery -A beluga flower`, serves the fleet's dashboard and tells the truth about
activity attempts: read through its HTTP API, a failed attempt is RETRY (or FAILURE for the last one)
with the activity's own exception, a successful one SUCCESS with its result, and searching a workflow
id finds that run's tasks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from beluga import workflow
from tests.fleet import ROOT, fleet_env, free_port


class Flower:
    def __init__(self, base: str, proc: subprocess.Popen[bytes]) -> None:
        self.base = base
        self.proc = proc

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=5) as resp:
            body = resp.read().decode()
            return json.loads(body) if path.startswith("/api/") else body

    def tasks(self, search: str) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks?" + urllib.parse.urlencode({"search": search}))

    def wait_tasks(self, search: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> list:
        """Flower learns of tasks from the workers' events, a moment after they happen."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(self.tasks(search).values())
            if done(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture(scope="module")
def flower(fleet) -> Iterator[Flower]:
    port = free_port()
    # Flower 2 serves its API only with authentication configured, or when told it may go without
    env = fleet_env(fleet.url, FLOWER_UNAUTHENTICATED_API="true")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "beluga", "flower", f"--port={port}",
                             "--address=127.0.0.1"], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    f = Flower(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                f.get("/workers")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("flower did not start") from None
                time.sleep(0.3)
        # Flower sees only the events sent after it subscribed: run probes until one shows up
        ex = fleet.executor()
        deadline = time.monotonic() + 30
        while True:
            probe = f"flower-probe-{uuid.uuid4().hex[:8]}"
            ex.execute("fleet_steps", workflow.WorkflowOptions(id=probe, input={"steps": 1})).result(timeout=20)
            if f.wait_tasks(probe, lambda ts: any(t["state"] == "SUCCESS" for t in ts), timeout=3):
                break
            assert time.monotonic() < deadline, "flower never received the workers' events"
        yield f
    finally:
        proc.terminate()
        proc.wait(15)


def test_flower_starts_and_serves_the_dashboard(flower: Flower) -> None:
    body = flower.get("/workers")
    assert "Flower" in body


def _by_name(tasks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [t for t in tasks if t["name"] == name]


def test_successful_and_retried_attempts(fleet, flower: Flower) -> None:
    """fleet_flaky fails twice, then returns 3: the task (Celery retries keep its id) was retried twice
    with the activity's exception and ended SUCCESS with the activity's result, its traceback still
    telling both failed attempts (not Beluga's internal `Retry`)."""
    wid = f"flower-ok-{uuid.uuid4().hex[:8]}"
    assert fleet.executor().execute("fleet_retrying", workflow.WorkflowOptions(id=wid)).result(timeout=30) == 3
    tasks = flower.wait_tasks(wid, lambda ts: any(t["state"] == "SUCCESS" and t["name"] == "activity:fleet_flaky"
                                                  for t in ts))
    [flaky] = _by_name(tasks, "activity:fleet_flaky")
    assert flaky["state"] == "SUCCESS" and flaky["result"] == "3", flaky
    assert flaky["retries"] == 2
    assert "RuntimeError('flaky attempt 2')" in (flaky["exception"] or ""), flaky   # the last retry's reason
    assert wid in flaky["args"] and "attempt=3" in flaky["args"]
    trace = flaky["traceback"] or ""
    assert "celery.exceptions.Retry" not in trace, trace
    first, second = trace.index("Attempt 1 failed:"), trace.index("Attempt 2 failed:")
    assert first < trace.index("RuntimeError: flaky attempt 1") < second < trace.index("RuntimeError: flaky attempt 2")
    assert trace.count("in fleet_flaky") == 2  # each attempt's own frames
    assert all(wid in t["args"] for t in tasks), tasks


def test_last_failed_attempt_is_failure_with_its_exception(fleet, flower: Flower) -> None:
    wid = f"flower-fail-{uuid.uuid4().hex[:8]}"
    handle = fleet.executor().execute("fleet_refusing", workflow.WorkflowOptions(
        id=wid, input={"order": wid, "attempts": 2}))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=30)
    tasks = flower.wait_tasks(wid, lambda ts: any(t["state"] == "FAILURE" for t in ts))
    [refused] = _by_name(tasks, "activity:fleet_refuse")
    assert refused["state"] == "FAILURE", refused
    assert refused["retries"] == 1                                   # attempt 1 was retried
    assert refused["exception"] == f"ValueError('card declined for {wid}')"
    assert "in fleet_refuse" in refused["traceback"] and "ValueError: card declined" in refused["traceback"]
    # both attempts, oldest first, each with its own traceback
    trace = refused["traceback"]
    assert trace.index("Attempt 1 failed:") < trace.index("Attempt 2 failed:"), trace
    assert trace.count(f"ValueError: card declined for {wid}") == 2 and "Retry" not in trace


@pytest.mark.parametrize("interval", [30.0, 700.0], ids=["celery-countdown", "durable-timer"])
def test_attempt_waiting_for_its_retry_is_retry(fleet, flower: Flower, interval: float) -> None:
    """While the next attempt waits (a Celery countdown, or Beluga's durable timer set for backoffs past
    300 s) the task shows RETRY with the exception that failed it."""
    ex = fleet.executor()
    wid = f"flower-retry-{uuid.uuid4().hex[:8]}"
    ex.execute("fleet_refusing", workflow.WorkflowOptions(id=wid, input={"order": wid, "attempts": 3,
                                                                        "interval": interval}))
    try:
        tasks = flower.wait_tasks(wid, lambda ts: any(t["state"] == "RETRY" for t in ts))
        [refused] = _by_name(tasks, "activity:fleet_refuse")
        assert refused["state"] == "RETRY", refused
        assert refused["exception"] == f"ValueError('card declined for {wid}')"
        # the attempt's own traceback, not that of the `Retry` Beluga raised to say so
        trace = refused["traceback"] or ""
        assert "in fleet_refuse" in trace and trace.rstrip().endswith(f"ValueError: card declined for {wid}")
        assert "Retry" not in trace, trace
    finally:
        ex.terminate(wid, "test over")


def test_search_by_workflow_id_finds_all_of_its_tasks(fleet, flower: Flower) -> None:
    """The client wakes the run with a coordinate task (it has no workflow code), then each activity
    runs as a task; all name the workflow id in their arguments, and `kwargs:workflow_id=<id>` matches
    exactly that run's tasks (not order-1's search hitting order-10)."""
    ex = fleet.executor()
    base = f"flower-search-{uuid.uuid4().hex[:8]}"
    for wid in (base, base + "0"):
        assert ex.execute("fleet_steps", workflow.WorkflowOptions(id=wid, input={"steps": 3})).result(timeout=30) == 6

    def complete(ts: list[dict[str, Any]]) -> bool:
        return len(_by_name(ts, "activity:fleet_step")) == 3 and all(t["state"] == "SUCCESS" for t in ts)

    exact = flower.wait_tasks(f"kwargs:workflow_id={base}", complete)
    assert len(_by_name(exact, "activity:fleet_step")) == 3
    assert {t["name"] for t in exact} <= {"activity:fleet_step", "coordinate"}
    assert all(base + "0" not in t["args"] for t in exact)
    assert sorted(t["result"] for t in _by_name(exact, "activity:fleet_step")) == ["1", "2", "3"]
    loose = flower.wait_tasks(base, lambda ts: len(_by_name(ts, "activity:fleet_step")) == 6)
    assert len(_by_name(loose, "activity:fleet_step")) == 6            # a plain search: a substring of both
