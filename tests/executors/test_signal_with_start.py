"""Executor contract, signal-with-start (issue 17 item 3): one atomic call that signals the open run of an
id or starts it holding the signal; callers racing on one id make one run that holds every signal."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.workflow import Signal, WorkflowOptions
from tests.executors import workflows as W
from tests.executors.conftest import Backend

Ids = Callable[[], str]


def _started_and_signals(ex: workflow.DurableExecutor, wid: str) -> tuple[int, list[object]]:
    history = ex.describe(wid).history
    return (sum(ev.type == "workflow_started" for ev in history),
            [ev.attrs["payload"] for ev in history if ev.type == "signal_received"])


def test_starts_the_run_holding_the_signal(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    handle = executor.signal_with_start(W.wf_gather, WorkflowOptions(id=wid, input=1), Signal("msg", "first"))
    assert handle.id == wid and handle.run_id
    assert handle.result(timeout=30) == ["first"]
    assert _started_and_signals(executor, wid) == (1, ["first"])


def test_signals_the_open_run_instead_of_starting_another(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    started = executor.execute(W.wf_gather, WorkflowOptions(id=wid, input=2))
    again = executor.signal_with_start(W.wf_gather, WorkflowOptions(id=wid, input=99), Signal("msg", "a"))
    assert again.run_id == started.run_id
    executor.signal(wid, Signal("msg", "b"))
    assert started.result(timeout=30) == ["a", "b"]
    assert _started_and_signals(executor, wid) == (1, ["a", "b"])


def test_a_closed_id_gets_a_new_run(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    first = executor.signal_with_start(W.wf_gather, WorkflowOptions(id=wid, input=1), Signal("msg", 1))
    assert first.result(timeout=30) == [1]
    second = executor.signal_with_start(W.wf_gather, WorkflowOptions(id=wid, input=1), Signal("msg", 2))
    assert second.run_id != first.run_id
    assert second.result(timeout=30) == [2]


def test_an_id_is_required(executor: workflow.DurableExecutor) -> None:
    with pytest.raises(ValueError, match="needs WorkflowOptions.id"):
        executor.signal_with_start(W.wf_gather, WorkflowOptions(input=1), Signal("msg", 1))


@pytest.mark.parametrize("callers", [2, 4])
def test_concurrent_callers_make_one_run_holding_every_signal(executor_factory: Backend, new_id: Ids,
                                                              callers: int) -> None:
    """Each caller is a client of its own (another process, in spirit), released at once by a barrier."""
    wid = new_id()
    clients = [executor_factory.executor() for _ in range(callers)]
    barrier = threading.Barrier(callers)
    run_ids: list[str] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            handle = clients[i].signal_with_start(W.wf_gather, WorkflowOptions(id=wid, input=callers),
                                                  Signal("msg", i))
            run_ids.append(handle.run_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(run_ids)) == 1, f"{callers} callers made runs {run_ids}"
    result = clients[0].get_handle(wid).result(timeout=30)
    assert sorted(result) == list(range(callers))
    started, signals = _started_and_signals(clients[0], wid)
    assert started == 1 and sorted(signals) == list(range(callers))  # type: ignore[type-var]
