"""The `WorkflowStore` contract (beluga/stores/base.py), held to every backend in conftest's `STORES`."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pytest

from beluga.core.errors import SerializationError, WorkflowAlreadyStarted
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.core.search import InvalidSearchAttribute, Range
from beluga.stores.base import WorkflowStore

RUNNING, COMPLETED, FAILED = WorkflowStatus.RUNNING, WorkflowStatus.COMPLETED, WorkflowStatus.FAILED


def ev(id: int, type: str = "activity_completed", **attrs: object) -> Event:
    return Event(id, type, 1000.0 + id, dict(attrs))


def run(wid: str = "wf", rid: str = "r1", *, n: int = 1, **kw: object) -> WorkflowState:
    fields: dict = {"workflow_type": "order", "created_at": 10.0, "updated_at": 10.0, **kw}
    history = (ev(1, "workflow_started"),) + tuple(ev(i) for i in range(2, n + 1))
    return WorkflowState(wid, rid, history=history, **fields)


def step(wid: str, rid: str, version: int, count: int = 1, **kw: object) -> Append:
    return Append(wid, rid, version, tuple(ev(version + k + 1, seq=version + k) for k in range(count)), **kw)


def test_save_load_round_trips_every_field(store: WorkflowStore) -> None:
    state = WorkflowState(
        "wf-1", "run-1", "order", status=FAILED, input={"items": [1, 2]}, result=None,
        error={"type": "ValueError", "message": "boom"}, created_at=1.5, updated_at=2.5,
        history=(ev(1, "workflow_started"), ev(2, x=1), ev(3, "workflow_failed")), queue="q1",
        parent={"workflow_id": "p", "run_id": "pr", "seq": 3})
    store.save(state)
    assert store.load("wf-1") == state
    assert store.load("wf-1").version == 3


def test_save_replaces_whatever_the_id_held(store: WorkflowStore) -> None:
    store.save(run(n=3))
    store.save(run(rid="r2", n=1, input="new"))
    loaded = store.load("wf")
    assert (loaded.run_id, loaded.input, loaded.version) == ("r2", "new", 1)


def test_load_unknown_is_none(store: WorkflowStore) -> None:
    assert store.load("nope") is None
    assert store.history("nope") == []


def test_list_filters_and_orders_newest_first(store: WorkflowStore) -> None:
    store.create(run("a", created_at=1.0))
    store.create(run("b", created_at=3.0, workflow_type="ship"))
    store.create(run("c", created_at=2.0, status=COMPLETED))
    store.create(run("d", created_at=4.0))
    assert [s.workflow_id for s in store.list()] == ["d", "b", "c", "a"]
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=RUNNING))] == ["d", "b", "a"]
    assert [s.workflow_id for s in store.list(WorkflowFilter(workflow_type="order"))] == ["d", "c", "a"]
    both = WorkflowFilter(status=RUNNING, workflow_type="order", limit=1)
    assert [s.workflow_id for s in store.list(both)] == ["d"]
    assert [s.workflow_id for s in store.list(WorkflowFilter(limit=2))] == ["d", "b"]
    assert store.list()[0].history == run("d").history


def test_list_sees_status_set_by_append(store: WorkflowStore) -> None:
    store.create(run("a"))
    assert store.append([step("a", "r1", 1, status=COMPLETED, result=7)]) == []
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=COMPLETED))] == ["a"]
    assert store.list(WorkflowFilter(status=RUNNING)) == []


def test_counts_by_status_follow_appends(store: WorkflowStore) -> None:
    assert store.counts() == {s.value: 0 for s in WorkflowStatus}
    store.create(run("a"))
    store.create(run("b", workflow_type="ship"))
    store.create(run("c", status=COMPLETED))
    assert store.append([step("a", "r1", 1, status=FAILED)]) == []
    assert store.counts() == {"running": 1, "completed": 1, "failed": 1, "canceled": 0, "timed_out": 0}
    assert store.counts("ship") == {"running": 1, "completed": 0, "failed": 0, "canceled": 0, "timed_out": 0}
    assert store.counts("none") == {s.value: 0 for s in WorkflowStatus}


def test_delete_forgets_run_and_history(store: WorkflowStore) -> None:
    store.create(run(n=2))
    store.delete("wf")
    store.delete("wf")  # unknown id: not an error
    assert store.load("wf") is None
    assert store.history("wf") == []
    store.create(run())  # the id is free again
    assert store.load("wf").version == 1


def test_create_twice_on_open_run_raises(store: WorkflowStore) -> None:
    store.create(run())
    with pytest.raises(WorkflowAlreadyStarted, match="wf"):
        store.create(run(rid="r2"))
    assert store.load("wf").run_id == "r1"


def test_create_over_closed_run_replaces_it(store: WorkflowStore) -> None:
    store.create(run(n=3, status=COMPLETED))
    store.create(run(rid="r2", n=1))
    loaded = store.load("wf")
    assert (loaded.run_id, loaded.status, loaded.version) == ("r2", RUNNING, 1)
    assert [e.id for e in store.history("wf")] == [1]
    # listed under the new run's status only
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=RUNNING))] == ["wf"]
    assert store.list(WorkflowFilter(status=COMPLETED)) == []


@pytest.mark.parametrize("replace_run_id, allowed", [("r1", True), ("other", False), (None, False)])
def test_replace_run_id_replaces_only_that_open_run(store: WorkflowStore, replace_run_id: str | None,
                                                    allowed: bool) -> None:
    store.create(run(n=3))
    if allowed:
        store.create(run(rid="r2"), replace_run_id=replace_run_id)
        assert store.load("wf").run_id == "r2"
        assert [e.id for e in store.history("wf")] == [1]
    else:
        with pytest.raises(WorkflowAlreadyStarted):
            store.create(run(rid="r2"), replace_run_id=replace_run_id)
        assert store.load("wf").version == 3


def test_replace_run_id_on_missing_run_just_creates(store: WorkflowStore) -> None:
    store.create(run(rid="r2"), replace_run_id="r1")
    assert store.load("wf").run_id == "r2"


def test_append_with_stale_version_is_refused_and_not_interleaved(store: WorkflowStore) -> None:
    store.create(run())
    assert store.append([step("wf", "r1", 1, 2)]) == []
    assert store.append([step("wf", "r1", 1, 1)]) == ["wf"]  # a second writer read version 1 too
    assert store.append([step("wf", "r1", 4, 1)]) == ["wf"]  # ahead of the history
    assert [e.id for e in store.history("wf")] == [1, 2, 3]
    assert store.load("wf").version == 3


def test_append_to_unknown_or_replaced_run_is_refused(store: WorkflowStore) -> None:
    assert store.append([step("ghost", "r1", 0)]) == ["ghost"]
    assert store.load("ghost") is None
    store.create(run(status=COMPLETED))
    store.create(run(rid="r2"))
    assert store.append([step("wf", "r1", 1)]) == ["wf"]  # the old run's writer, same version
    assert store.load("wf").version == 1


def test_batch_commits_all_but_the_refused(store: WorkflowStore) -> None:
    for wid in "abc":
        store.create(run(wid))
    refused = store.append([step("a", "r1", 1), step("b", "r1", 0), step("c", "r1", 1, 2),
                            step("zz", "r1", 0)])
    assert refused == ["b", "zz"]
    assert [store.load(w).version for w in "abc"] == [2, 1, 3]


def test_batch_applies_appends_to_one_run_in_order(store: WorkflowStore) -> None:
    store.create(run())
    assert store.append([step("wf", "r1", 1), step("wf", "r1", 2, 2), step("wf", "r1", 2)]) == ["wf"]
    assert [e.id for e in store.history("wf")] == [1, 2, 3, 4]


def test_empty_batch(store: WorkflowStore) -> None:
    assert store.append([]) == []


def test_history_after(store: WorkflowStore) -> None:
    store.create(run(n=5))
    assert [e.id for e in store.history("wf", after=0)] == [1, 2, 3, 4, 5]
    assert [e.id for e in store.history("wf", after=3)] == [4, 5]
    assert store.history("wf", after=5) == []
    assert store.history("wf", after=9) == []


def test_history_grows_one_step_at_a_time_and_reads_from_anywhere(store: WorkflowStore) -> None:
    """Short histories and long ones may be kept differently (the Redis store keeps its first events in
    the run's hash): every read sees the same events, at every length and from every point."""
    store.create(run(n=1))
    version = 1
    for i in range(14):
        assert [e.id for e in store.history("wf")] == list(range(1, version + 1))
        for after in range(version + 1):
            assert [e.id for e in store.history("wf", after=after)] == list(range(after + 1, version + 1))
        loaded = store.load("wf")
        assert loaded is not None and [e.id for e in loaded.history] == list(range(1, version + 1))
        count = 1 + i % 2     # one event, then two
        assert store.append([step("wf", "r1", version, count=count)]) == []
        version += count
    assert len(store.history("wf")) == version > 20


def test_append_updates_the_summary(store: WorkflowStore) -> None:
    store.create(run())
    store.append([step("wf", "r1", 1, updated_at=20.0)])
    s = store.load("wf")
    assert (s.status, s.result, s.error, s.updated_at, s.input) == (RUNNING, None, None, 20.0, None)
    store.append([step("wf", "r1", 2)])  # no updated_at: unchanged
    assert store.load("wf").updated_at == 20.0
    store.append([step("wf", "r1", 3, status=COMPLETED, result={"total": 3}, updated_at=30.0)])
    s = store.load("wf")
    assert (s.status, s.result, s.updated_at, s.version) == (COMPLETED, {"total": 3}, 30.0, 4)
    assert (s.workflow_type, s.created_at) == ("order", 10.0)

    store.create(run("f"))
    store.append([step("f", "r1", 1, status=FAILED, error={"type": "E", "message": "m"})])
    s = store.load("f")
    assert (s.status, s.error, s.result) == (FAILED, {"type": "E", "message": "m"}, None)


def test_payload_types_survive(store: WorkflowStore) -> None:
    payload = {
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "naive": dt.datetime(2024, 1, 1, 0, 0, 0, 1), "day": dt.date(2024, 2, 29),
        "money": Decimal("19.990"), "pair": (1, ("a", b"\x00\xff")), "tags": {"x", "y"},
        "id": uuid.UUID(int=7), "big": 2**100, "blob": b"\x00\x01", "list": [(1, 2)],
    }
    store.create(run(input=payload))
    store.append([Append("wf", "r1", 1, (Event(2, "activity_completed", 1.0, {"result": payload}),),
                         result=payload)])
    s = store.load("wf")
    assert s.input == payload and s.result == payload
    assert s.history[1].attrs["result"] == payload
    assert type(s.history[1].attrs["result"]["pair"][1]) is tuple
    assert type(s.result["list"][0]) is tuple


def test_callers_cannot_mutate_stored_state(store: WorkflowStore) -> None:
    attrs = {"items": [1]}
    store.create(run(input=attrs))
    store.append([Append("wf", "r1", 1, (Event(2, "x", 1.0, attrs),))])
    attrs["items"].append(2)
    loaded = store.load("wf")
    loaded.input["items"].append(3)
    loaded.history[1].attrs["items"].append(3)
    store.history("wf")[1].attrs["items"].append(4)
    assert store.load("wf").input == {"items": [1]}
    assert store.history("wf")[1].attrs == {"items": [1]}


def test_unencodable_payload_raises_and_writes_nothing(store: WorkflowStore) -> None:
    store.create(run("a"))
    store.create(run("b"))
    bad = Append("b", "r1", 1, (Event(2, "x", 1.0, {"fn": lambda: 0}),))
    with pytest.raises(SerializationError, match=r"\['fn'\]"):
        store.append([step("a", "r1", 1), bad])
    assert store.load("a").version == 1


def test_event_ids_must_continue_the_history(store: WorkflowStore) -> None:
    store.create(run())
    with pytest.raises(ValueError, match="without gaps"):
        store.append([Append("wf", "r1", 1, (ev(3),))])
    with pytest.raises(ValueError):
        store.create(WorkflowState("x", "r", "t", history=(ev(2),)))
    assert store.load("wf").version == 1 and store.load("x") is None


def test_concurrent_appenders_never_interleave(store: WorkflowStore) -> None:
    store.create(run())
    threads, per_thread = 8, 15
    won: dict[int, list[int]] = {}  # version -> the threads whose append at it was accepted
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        start.wait()
        done = 0
        while done < per_thread:
            version = len(store.history("wf"))
            event = Event(version + 1, "signal_received", 1.0, {"thread": t, "n": done})
            if store.append([Append("wf", "r1", version, (event,))]) == []:
                with lock:
                    won.setdefault(version, []).append(t)
                done += 1

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    history = store.history("wf")
    assert [e.id for e in history] == list(range(1, threads * per_thread + 2))
    assert all(len(ts) == 1 for ts in won.values()) and len(won) == threads * per_thread
    marks = [(e.attrs["thread"], e.attrs["n"]) for e in history[1:]]
    assert sorted(marks) == [(t, n) for t in range(threads) for n in range(per_thread)]
    assert [won[e.id - 1][0] for e in history[1:]] == [e.attrs["thread"] for e in history[1:]]


# --- listing: id prefix, stuck, kept copies, cursors (the console's and `beluga list`'s) -------------------
def ids(states: list[WorkflowState]) -> list[str]:
    return [s.workflow_id for s in states]


def test_list_by_id_prefix_takes_the_prefix_literally(store: WorkflowStore) -> None:
    for i, wid in enumerate(["order-1", "order-2", "ship-1", "order[*]?", "orders"]):
        store.create(run(wid, created_at=float(i)))
    assert ids(store.list(WorkflowFilter(id_prefix="order-"))) == ["order-2", "order-1"]
    assert ids(store.list(WorkflowFilter(id_prefix="order[*]"))) == ["order[*]?"]
    assert ids(store.list(WorkflowFilter(id_prefix="order", limit=2))) == ["orders", "order[*]?"]
    assert store.list(WorkflowFilter(id_prefix="nothing")) == []
    assert store.counts(WorkflowFilter(id_prefix="order-"))["running"] == 2


def test_list_stuck_runs_apart(store: WorkflowStore) -> None:
    store.create(run("ok", created_at=1.0))
    store.create(run("stuck", created_at=2.0, workflow_type="ship"))
    store.create(run("failed", created_at=3.0, status=FAILED, error={"type": "E", "message": "x"}))
    assert store.append([step("stuck", "r1", 1, error={"type": "NonDeterminism", "message": "code changed"})]) == []
    assert ids(store.list(WorkflowFilter(stuck=True))) == ["stuck"]
    assert ids(store.list(WorkflowFilter(stuck=False))) == ["failed", "ok"]
    assert ids(store.list(WorkflowFilter(stuck=True, workflow_type="order"))) == []
    assert store.counts(WorkflowFilter(stuck=True)) == {**{s.value: 0 for s in WorkflowStatus}, "running": 1}
    assert store.counts(WorkflowFilter(stuck=False)) == {**{s.value: 0 for s in WorkflowStatus},
                                                         "running": 1, "failed": 1}
    assert store.append([step("stuck", "r1", 2, error={})]) == []  # its code matches again
    assert store.list(WorkflowFilter(stuck=True)) == []


def test_kept_copies_can_be_left_out_of_lists_and_counts(store: WorkflowStore) -> None:
    store.create(run("a", created_at=1.0, status=FAILED))
    store.save(run("a/runs/1", created_at=0.5, status=FAILED))
    store.save(run("a/runs/x", created_at=0.7))  # not a kept copy: only /runs/<n> is
    assert ids(store.list(WorkflowFilter(kept_copies=False))) == ["a", "a/runs/x"]
    assert ids(store.list()) == ["a", "a/runs/x", "a/runs/1"]
    assert store.counts(WorkflowFilter(kept_copies=False))["failed"] == 1
    assert store.counts()["failed"] == 2
    assert store.counts(WorkflowFilter(kept_copies=False, id_prefix="a/"))["failed"] == 0


@pytest.mark.parametrize("f", [WorkflowFilter(), WorkflowFilter(status=RUNNING), WorkflowFilter(workflow_type="ship"),
                               WorkflowFilter(id_prefix="w1"), WorkflowFilter(stuck=False, kept_copies=False)],
                         ids=["all", "status", "type", "prefix", "not-stuck"])
def test_cursors_page_both_ways_through_every_run_once(store: WorkflowStore, f: WorkflowFilter) -> None:
    from dataclasses import replace

    for i in range(23):  # runs created at the same instant are told apart by their ids
        store.create(run(f"w{i:02d}", created_at=float(i // 3), status=COMPLETED if i % 4 == 0 else RUNNING,
                         workflow_type="ship" if i % 2 else "order"))
    every = ids(store.list(replace(f, limit=100)))
    counts = store.counts(f)  # by status, over every page
    assert every and len(every) == (counts[f.status.value] if f.status else sum(counts.values()))
    pages: list[list[str]] = []
    cursor = None
    while True:
        got = store.list(replace(f, limit=4, after=cursor))
        if not got:
            break
        pages.append(ids(got))
        cursor = (got[-1].created_at, got[-1].workflow_id)
    assert [wid for p in pages for wid in p] == every
    back: list[list[str]] = []
    first = store.list(replace(f, limit=1, after=cursor))  # past the last page: nothing
    assert first == []
    cursor = None
    last = store.list(replace(f, limit=100))[-1]
    cursor = (last.created_at, last.workflow_id)
    while True:
        got = store.list(replace(f, limit=4, before=cursor))
        if not got:
            break
        back.append(ids(got))
        cursor = (got[0].created_at, got[0].workflow_id)
    assert [wid for p in reversed(back) for wid in p] + [last.workflow_id] == every
    assert all(len(p) == 4 for p in back[:-1])  # each page the nearest 4 before its cursor


# --- search attributes and memo (beluga/core/search.py): indexed where the store lists ---------------------
UTC = dt.timezone.utc


def tagged(wid: str, created: float, attrs: dict, **kw: object) -> WorkflowState:
    return run(wid, created_at=created, search_attributes=attrs, **kw)


def test_search_attributes_and_memo_round_trip(store: WorkflowStore) -> None:
    when = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    attrs = {"customer": "c-42", "amount": 12.5, "items": 3, "vip": True, "due": when}
    store.create(tagged("a", 1.0, attrs, memo={"note": ["any", "payload"]}))
    for got in (store.load("a"), store.load_summary("a"), store.list()[0]):
        assert got.search_attributes == attrs and got.memo == {"note": ["any", "payload"]}
    assert store.load("b") is None and store.create(run("b")) is None
    assert store.load("b").search_attributes == {} and store.load("b").memo is None


def test_where_matches_typed_equality_and_ranges(store: WorkflowStore) -> None:
    day = dt.datetime(2026, 1, 1, tzinfo=UTC)
    store.create(tagged("a", 1.0, {"customer": "c-1", "amount": 5, "vip": True, "at": day}))
    store.create(tagged("b", 2.0, {"customer": "c-2", "amount": 10.0, "vip": False, "at": day + dt.timedelta(days=1)}))
    store.create(tagged("c", 3.0, {"customer": "c-1", "amount": 99.5, "code": "10"}, status=COMPLETED))
    store.create(tagged("d", 4.0, {"customer": "c-1", "amount": 100, "code": 10}, workflow_type="ship"))
    store.create(run("e", created_at=5.0))  # no attributes: no condition holds for it

    def where(**conds: object) -> list[str]:
        return ids(store.list(WorkflowFilter(where=conds)))

    assert where(customer="c-1") == ["d", "c", "a"]
    assert where(amount=10) == ["b"]  # 10 == 10.0: one numeric kind
    assert where(amount=Range(gte=10, lt=100)) == ["c", "b"]
    assert where(amount=Range(gt=10)) == ["d", "c"]
    assert where(amount=Range(lte=10)) == ["b", "a"]
    assert where(customer="c-1", amount=Range(gte=10)) == ["d", "c"]
    assert where(vip=True) == ["a"] and where(vip=False) == ["b"]
    assert where(code="10") == ["c"] and where(code=10) == ["d"]  # a keyword is not a number
    assert where(at=Range(gt=day)) == ["b"] and where(at=day) == ["a"]
    assert where(at=day.astimezone(dt.timezone(dt.timedelta(hours=-5)))) == ["a"]  # the same instant
    assert where(customer="nobody") == [] and where(missing=1) == []
    assert ids(store.list(WorkflowFilter(status=RUNNING, where={"customer": "c-1"}))) == ["d", "a"]
    assert ids(store.list(WorkflowFilter(workflow_type="order", where={"customer": "c-1"}))) == ["c", "a"]
    assert ids(store.list(WorkflowFilter(limit=1, where={"customer": "c-1"}))) == ["d"]
    counts = store.counts(WorkflowFilter(where={"customer": "c-1"}))
    assert (counts["running"], counts["completed"], sum(counts.values())) == (2, 1, 3)


def test_upserted_attributes_are_indexed_by_the_append(store: WorkflowStore) -> None:
    store.create(tagged("a", 1.0, {"stage": "new", "amount": 1}))
    store.create(tagged("b", 2.0, {"stage": "new"}))
    assert store.append([step("a", "r1", 1, search_attributes={"stage": "paid", "amount": 50})]) == []
    assert ids(store.list(WorkflowFilter(where={"stage": "new"}))) == ["b"]
    assert ids(store.list(WorkflowFilter(where={"stage": "paid", "amount": Range(gte=50)}))) == ["a"]
    assert store.load_summary("a").search_attributes == {"stage": "paid", "amount": 50}
    assert store.append([step("a", "r1", 2, status=COMPLETED, result=1)]) == []  # closing keeps them
    assert ids(store.list(WorkflowFilter(status=COMPLETED, where={"stage": "paid"}))) == ["a"]
    assert store.append([step("b", "r1", 7, search_attributes={"stage": "stale"})]) == ["b"]  # refused: nothing
    assert store.list(WorkflowFilter(where={"stage": "stale"})) == []                       # indexed either
    assert store.append([step("b", "r1", 1, search_attributes={})]) == []  # every attribute removed
    assert store.list(WorkflowFilter(where={"stage": "new"})) == []
    assert store.counts(WorkflowFilter(where={"stage": "paid"}))["completed"] == 1


def test_replaced_and_deleted_runs_leave_the_attribute_index(store: WorkflowStore) -> None:
    store.create(tagged("a", 1.0, {"customer": "old"}))
    store.create(tagged("a", 2.0, {"customer": "new"}, rid="r2"), replace_run_id="r1")  # continue-as-new
    assert store.list(WorkflowFilter(where={"customer": "old"})) == []
    assert ids(store.list(WorkflowFilter(where={"customer": "new"}))) == ["a"]
    store.delete("a")
    assert store.list(WorkflowFilter(where={"customer": "new"})) == []
    store.save(tagged("s", 3.0, {"customer": "saved"}))
    assert ids(store.list(WorkflowFilter(where={"customer": "saved"}))) == ["s"]


def test_bad_search_attributes_are_refused_and_write_nothing(store: WorkflowStore) -> None:
    store.create(tagged("a", 1.0, {"k": "v"}))
    for bad in ({"k": {"nested": 1}}, {"k": [1]}, {"k": dt.datetime(2026, 1, 1)}, {"bad name": 1}):
        with pytest.raises(InvalidSearchAttribute):
            store.append([step("a", "r1", 1, search_attributes=bad)])
    assert store.load("a").version == 1 and store.load("a").search_attributes == {"k": "v"}
    with pytest.raises(InvalidSearchAttribute, match="Range"):
        WorkflowFilter(where={"k": Range(gte="a")})
    with pytest.raises(InvalidSearchAttribute):
        WorkflowFilter(where={"k": {"nested": 1}})


def test_where_pages_with_cursors(store: WorkflowStore) -> None:
    for i in range(30):
        store.create(tagged(f"w{i:02d}", float(i // 2), {"tenant": "t1" if i % 3 else "t2", "n": i}))
    f = WorkflowFilter(where={"tenant": "t1", "n": Range(gte=4)})
    every = ids(store.list(WorkflowFilter(limit=100, where=f.where)))
    assert every == [f"w{i:02d}" for i in reversed(range(4, 30)) if i % 3]
    got, cursor = [], None
    while page := store.list(WorkflowFilter(limit=4, after=cursor, where=f.where)):
        got += ids(page)
        cursor = (page[-1].created_at, page[-1].workflow_id)
    assert got == every
    back = store.list(WorkflowFilter(limit=3, before=(5.0, "w10"), where=f.where))
    assert ids(back) == [w for w in every if (int(w[1:]) // 2, w) > (5, "w10")][-3:]
