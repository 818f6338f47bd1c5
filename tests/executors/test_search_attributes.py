"""Executor contract, search attributes and memo (issue 17 item 4): given at the start, seen by the code,
upserted by it as recorded commands, listed by the store's `where` and replayed deterministically."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.core.search import InvalidSearchAttribute, Range
from beluga.stores import SQLiteStore
from beluga.workflow import Signal, WorkflowFilter, WorkflowOptions
from tests.executors import workflows as W
from tests.executors.conftest import Backend
from tests.executors.helpers import eventually, wait_for_event

Ids = Callable[[], str]
WHEN = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.timezone.utc)


def _store(backend: Backend, ex: workflow.DurableExecutor) -> Any:
    if backend.provider == "temporal":
        from beluga.temporal.store import TemporalStore

        store = TemporalStore(backend.temporal.target)
        backend.stores.append(store)
        return store
    return ex.store  # type: ignore[attr-defined]


def _listed(store: Any, **where: Any) -> list[str]:
    return [s.workflow_id for s in store.list(WorkflowFilter(where=where, limit=50))]


def test_options_upserts_listing_and_memo(executor_factory: Backend, new_id: Ids) -> None:
    ex = executor_factory.executor()
    store = _store(executor_factory, ex)
    wid, other = new_id(), new_id()
    attrs = {"customer": wid, "vip": True, "due": WHEN}
    handle = ex.execute(W.wf_tagged, WorkflowOptions(id=wid, input={"amount": 42.5}, search_attributes=attrs,
                                                     memo={"note": "rush"}))
    ex.execute(W.wf_tagged, WorkflowOptions(id=other, input={"amount": 7}, search_attributes={"customer": other}))
    summary = ex.describe(wid)  # its code may have upserted already: what it started with is in its first event
    started = summary.history[0].attrs
    assert started["search_attributes"] == attrs and started["memo"] == {"note": "rush"}
    assert summary.search_attributes.items() >= attrs.items() and summary.memo == {"note": "rush"}
    assert eventually(lambda: _listed(store, customer=wid) == [wid], timeout=20, what="listed by its customer")

    wait_for_event(ex, wid, "search_attributes_upserted", timeout=30)
    after_upsert = {**attrs, "stage": "paid", "amount": 42.5}
    assert eventually(lambda: ex.describe(wid).search_attributes == after_upsert, timeout=20)
    assert eventually(lambda: _listed(store, stage="paid", amount=Range(gt=40)) == [wid], timeout=20,
                      what="listed by its upserted attributes")
    ex.signal(wid, Signal("go", None))
    result = handle.result(timeout=30)
    final = {"customer": wid, "due": WHEN, "stage": "shipped", "amount": 42.5}
    assert result == {"attrs": attrs, "memo": {"note": "rush"}, "after": final}
    assert eventually(lambda: ex.describe(wid).search_attributes == final, timeout=20)
    assert eventually(lambda: _listed(store, customer=wid, stage="shipped") == [wid], timeout=20)
    assert _listed(store, customer=wid, vip=True) == []  # removed by the second upsert
    upserts = [ev.attrs["attributes"] for ev in ex.describe(wid).history if ev.type == "search_attributes_upserted"]
    assert upserts == [{"stage": "paid", "amount": 42.5}, {"stage": "shipped", "vip": None}]
    ex.signal(other, Signal("go", None))
    ex.get_handle(other).result(timeout=30)


def test_bad_values_are_refused_where_given(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    for bad in ({"k": {"nested": 1}}, {"k": [1, 2]}, {"k": dt.datetime(2026, 1, 1)}, {"no spaces": 1},
                {"k": float("nan")}):
        with pytest.raises(InvalidSearchAttribute):
            executor.execute(W.wf_echo, WorkflowOptions(id=new_id(), input=1, search_attributes=bad))
    with pytest.raises(workflow.SerializationError):
        executor.execute(W.wf_echo, WorkflowOptions(id=new_id(), input=1, memo=object()))
    got = executor.execute(W.wf_bad_upsert, WorkflowOptions(id=new_id(), input={"a": 1})).result(timeout=30)
    assert got.startswith("InvalidSearchAttribute: search attribute 'bad'")


# --- replay: the default executor on SQLite, a second executor replaying what the first recorded ---------
def upserts_other_values(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> Any:
    """wf_tagged as someone edited it: the first upsert says another stage."""
    ctx.execute_activity(W.echo, 1)
    ctx.upsert_search_attributes(stage="charged", amount=spec.get("amount", 1))
    ctx.receive_signal("go").receive()
    return None


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[Callable[..., workflow.DurableExecutor]]:
    made: list[workflow.DurableExecutor] = []

    def make(**extra: Any) -> workflow.DurableExecutor:
        ex = workflow.new("default", workflow.Config(store=SQLiteStore(tmp_path / "sa.db"), extra=extra))
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


def test_a_replay_upserts_the_recorded_values(on_sqlite: Callable[..., workflow.DurableExecutor]) -> None:
    a = on_sqlite()
    a.execute(W.wf_tagged, WorkflowOptions(id="t1", input={"amount": 3}, search_attributes={"vip": True}))
    wait_for_event(a, "t1", "search_attributes_upserted")
    a.close()
    b = on_sqlite()  # replays the history, upsert included, and carries the run on
    b.signal("t1", Signal("go", None))
    assert b.get_handle("t1").result(timeout=10)["after"] == {"stage": "shipped", "amount": 3}
    assert [s.workflow_id for s in b.store.list(WorkflowFilter(where={"stage": "shipped"}))] == ["t1"]


def test_a_replay_that_upserts_other_values_is_non_determinism(
        on_sqlite: Callable[..., workflow.DurableExecutor]) -> None:
    a = on_sqlite()
    a.execute(W.wf_tagged, WorkflowOptions(id="t2", input={"amount": 3}))
    wait_for_event(a, "t2", "search_attributes_upserted")
    a.close()
    reg = workflow.Registry()
    reg.add_workflow(upserts_other_values, name="wf_tagged")
    reg.add_activity(W.echo)
    b = on_sqlite(registry=reg)
    b.signal("t2", Signal("go", None))
    stuck = eventually(lambda: b.describe("t2").error, timeout=10, what="the run held stuck")
    assert stuck["type"] == "NonDeterminismError"
    assert "search attributes" in stuck["message"] and "'paid'" in stuck["message"]
    assert b.store.list(WorkflowFilter(where={"stage": "charged"})) == []  # nothing recorded of the new code



def test_continue_as_new_carries_attributes_and_memo(executor: workflow.DurableExecutor, new_id: Ids) -> None:
    wid = new_id()
    executor.execute(W.wf_tagged_continue, WorkflowOptions(id=wid, input=0, search_attributes={"customer": "c-1"},
                                                           memo="m"))

    def second_run() -> Any:
        state = executor.describe(wid)
        return state if state.status is workflow.WorkflowStatus.COMPLETED else None

    state = eventually(second_run, timeout=30, what="the continued run completed")
    assert state.result == {"attrs": {"customer": "c-1", "stage": "first"}, "memo": "m"}
    assert state.search_attributes == {"customer": "c-1", "stage": "first"} and state.memo == "m"
