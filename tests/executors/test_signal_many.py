"""Executor contract, `signal_many` (issue 19 item 4): many signals in one call, one outcome per signal in
order, so that a closed or unknown run is reported without hiding what happened to the others."""

from __future__ import annotations

from collections.abc import Callable

from beluga import workflow
from beluga.core.errors import InvalidName, WorkflowNotFound, WorkflowNotRunning
from beluga.workflow import Signal, WorkflowOptions
from tests.executors import workflows as W

Ids = Callable[[], str]


def test_delivers_each_signal_and_reports_each_refusal_in_order(executor: workflow.DurableExecutor,
                                                                 new_id: Ids) -> None:
    open_runs = [executor.execute(W.wf_gather, WorkflowOptions(id=new_id(), input=2)) for _ in range(4)]
    closed = executor.execute(W.wf_gather, WorkflowOptions(id=new_id(), input=0))
    assert closed.result(timeout=30) == []
    missing = new_id()
    batch = [(h.id, Signal("msg", f"{h.id}:1")) for h in open_runs]
    batch += [(closed.id, Signal("msg", "late")), (missing, Signal("msg", "lost")), (open_runs[0].id, Signal("", 1))]
    batch += [(h.id, Signal("msg", f"{h.id}:2")) for h in open_runs]

    outcomes = executor.signal_many(batch)

    assert len(outcomes) == len(batch)
    assert outcomes[:4] == [None] * 4 and outcomes[7:] == [None] * 4
    assert isinstance(outcomes[4], WorkflowNotRunning)
    assert isinstance(outcomes[5], WorkflowNotFound) and missing in str(outcomes[5])
    assert isinstance(outcomes[6], InvalidName)
    for h in open_runs:  # each run got its two signals, in the order sent, and nothing else
        assert h.result(timeout=30) == [f"{h.id}:1", f"{h.id}:2"]
        signals = [ev.attrs["payload"] for ev in executor.describe(h.id).history if ev.type == "signal_received"]
        assert signals == [f"{h.id}:1", f"{h.id}:2"]


def test_an_empty_batch_is_nothing(executor: workflow.DurableExecutor) -> None:
    assert executor.signal_many([]) == []
