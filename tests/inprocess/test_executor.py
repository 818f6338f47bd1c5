"""What only the default (in-process) executor promises: bounded memory through eviction and replay,
and recovery of open runs when a new executor starts on the same store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.stores import InMemoryStore, SQLiteStore
from tests.executors import workflows as W
from tests.executors.helpers import eventually, wait_for_event


@pytest.fixture
def make() -> Iterator[Any]:
    made: list[workflow.DurableExecutor] = []

    def new(store: workflow.WorkflowStore, **extra: Any) -> workflow.DurableExecutor:
        ex = workflow.new("default", workflow.Config(store=store, extra=extra))
        made.append(ex)
        return ex

    yield new
    for ex in made:
        ex.close()


def test_evicted_runs_replay_without_redoing_side_effects(make: Any) -> None:
    ex = make(InMemoryStore(), cache_size=1)
    ids = [f"evict-{i}" for i in range(5)]
    for wid in ids:
        ex.execute(W.wf_side_effect, workflow.WorkflowOptions(id=wid, input=wid))
    firsts = {wid: eventually(lambda wid=wid: wait_for_event(ex, wid, "marker_recorded") and
                              ex.query(wid, "first")) for wid in ids}
    for wid in ids:  # each signal finds its run evicted and rebuilds it from the history
        ex.signal(wid, workflow.Signal("go"))
    for wid in ids:
        assert ex.get_handle(wid).result(timeout=5) == firsts[wid]  # now(), random(), uuid4() replayed
        assert W.calls(wid) == [{"event": "side_effect"}]


def test_a_new_executor_resumes_open_runs(make: Any, tmp_path: Path) -> None:
    db = tmp_path / "resume.db"
    first = make(SQLiteStore(db))
    first.execute(W.wf_sleep, workflow.WorkflowOptions(id="resume-sleep", input=0.3))
    first.execute(W.wf_wait_signal, workflow.WorkflowOptions(id="resume-signal"))
    wait_for_event(first, "resume-sleep", "timer_started")
    first.close()

    second = make(SQLiteStore(db))
    assert second.get_handle("resume-sleep").result(timeout=5) == "woke"
    second.signal("resume-signal", workflow.Signal("go", "later"))
    assert second.get_handle("resume-signal").result(timeout=5) == "later"


def test_recover_starts_runs_that_never_took_a_step(make: Any) -> None:
    store = InMemoryStore()
    ex = make(store, recover=False)
    ex.close()  # the executor is gone before its coordinator ran the new run
    from beluga.inprocess.executor import new_run_state

    store.create(new_run_state("wf_echo", "never-stepped", "hello", None, None, 1.0))
    again = make(store)
    assert again.get_handle("never-stepped").result(timeout=5) == "hello"


def test_two_executors_on_one_run_do_not_corrupt_it(make: Any, tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    a, b = make(SQLiteStore(db)), make(SQLiteStore(db))
    handle = a.execute(W.wf_collect, workflow.WorkflowOptions(id="two-writers", input=6))
    wait_for_event(a, "two-writers", "activity_completed")
    for i in range(6):
        (a if i % 2 else b).signal("two-writers", workflow.Signal("msg", i))
    assert handle.result(timeout=5) == [0, 1, 2, 3, 4, 5]
    history = a.describe("two-writers").history
    assert [ev.id for ev in history] == list(range(1, len(history) + 1))
    assert [ev.type for ev in history].count("signal_received") == 6
