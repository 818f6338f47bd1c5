"""The Dapr store beyond the contract suite, against tests/stores/dapr_server.py (the documented state
API; no daprd can be installed here): the stand-in's own contract first, then what the store writes."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores.dapr import DaprError, DaprStore
from tests.stores.dapr_server import StateStore, dapr_state_server


@pytest.fixture
def sidecar() -> Iterator[tuple[str, StateStore]]:
    with dapr_state_server("statestore") as (url, stores):
        yield url, stores["statestore"]


def call(url: str, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, (json.loads(raw) if raw else None), response.getheader("ETag") or ""


def test_the_stand_in_follows_the_documented_contract(sidecar: tuple[str, StateStore]) -> None:
    url, _ = sidecar
    base = "/v1.0/state/statestore"
    assert call(url, "POST", base, [{"key": "k", "value": {"n": 1}}])[0] == 204
    status, value, etag = call(url, "GET", base + "/k")
    assert (status, value) == (200, {"n": 1}) and etag
    assert call(url, "GET", base + "/missing")[0] == 204
    stale = [{"key": "k", "value": 2, "etag": etag + "0", "options": {"concurrency": "first-write"}}]
    status, error, _ = call(url, "POST", base, stale)
    assert (status, error["errorCode"]) == (409, "ERR_STATE_SAVE")
    insert_only = [{"key": "k", "value": 2, "options": {"concurrency": "first-write"}}]
    assert call(url, "POST", base, insert_only)[0] == 409  # first-write, no ETag, key exists
    assert call(url, "POST", base, [{"key": "k", "value": 3, "etag": etag}])[0] == 204
    assert call(url, "DELETE", base + "/k", headers={"If-Match": etag})[0] == 409  # the ETag moved on
    status, items, _ = call(url, "POST", base + "/bulk", {"keys": ["k", "nope"], "parallelism": 2})
    assert items[0]["data"] == 3 and items[1] == {"key": "nope"}
    ops = [{"operation": "upsert", "request": {"key": "a", "value": 1}},
           {"operation": "upsert", "request": {"key": "k", "value": 4, "etag": etag}}]  # stale: all or nothing
    status, error, _ = call(url, "POST", base + "/transaction", {"operations": ops})
    assert (status, error["errorCode"]) == (500, "ERR_STATE_TRANSACTION")
    assert call(url, "GET", base + "/a")[0] == 204
    assert call(url, "POST", "/v1.0/state/other", [])[0] == 400


def run(wid: str, rid: str = "r1", **kw: Any) -> WorkflowState:
    return WorkflowState(wid, rid, "order", created_at=1.0, history=(Event(1, "workflow_started", 1.0),), **kw)


def test_each_batch_is_one_transaction_and_the_index_moves_with_the_status(sidecar: tuple[str, StateStore]) -> None:
    url, state = sidecar
    store = DaprStore(url, prefix="p", index_shards=1)
    for wid in "abc":
        store.create(run(wid))
    before = state.transactions
    appends = [Append(w, "r1", 1, (Event(2, "workflow_completed", 2.0),), status=WorkflowStatus.COMPLETED,
                      result=w) for w in "ab"]
    assert store.append([*appends, Append("c", "r1", 1, (Event(2, "x", 2.0),))]) == []
    assert state.transactions == before + 1  # the whole batch, index included, in one transaction
    index = json.loads(state.data["p/index/0"][1])
    assert {w: entry[0] for w, entry in index.items()} == {"a": "completed", "b": "completed", "c": "running"}
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=WorkflowStatus.COMPLETED))] == ["b", "a"]
    store.delete("a")
    assert "a" not in json.loads(state.data["p/index/0"][1])
    assert not [k for k in state.data if k.endswith("/a")]


def test_another_client_wins_the_race(sidecar: tuple[str, StateStore]) -> None:
    url, state = sidecar
    one, two = DaprStore(url, prefix="p"), DaprStore(url, prefix="p")
    one.create(run("wf"))
    assert one.load("wf").version == 1  # one now holds the record's ETag
    assert two.append([Append("wf", "r1", 1, (Event(2, "x", 2.0, {"by": "two"}),))]) == []
    conflicts = state.conflicts
    assert one.append([Append("wf", "r1", 1, (Event(2, "x", 2.0, {"by": "one"}),))]) == ["wf"]
    assert one.append([Append("wf", "r1", 2, (Event(3, "x", 3.0, {"by": "one"}),))]) == []
    assert [e.attrs.get("by") for e in two.history("wf")] == [None, "two", "one"]
    assert state.conflicts == conflicts + 1  # the stale ETag cost one refused transaction, no lost write


def test_a_failure_that_is_no_conflict_is_raised(sidecar: tuple[str, StateStore]) -> None:
    url, _ = sidecar
    with pytest.raises(DaprError, match="ERR_STATE_STORE_NOT_FOUND"):
        DaprStore(url, store="nope").create(run("wf"))
