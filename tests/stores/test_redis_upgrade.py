"""Runs written by Beluga 0.1.0 stay listed after the upgrade: 0.1.0 listed every run in one global index
(`<p>:index:all`, `:status:<s>`, `:type:<t>`); 0.2.0 lists them per shard, in the step that creates or
closes a run. `RedisStore.adopt_listing` (run by each worker as it starts) moves the old entries over.
A real Redis-compatible server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from beluga.core.records import Event, EventType, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores.redis import RedisStore


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url, prefix=f"up{uuid.uuid4().hex[:8]}")
    try:
        yield s
    finally:
        for key in s.redis.scan_iter(f"{s.prefix}:*"):
            s.redis.delete(key)
        s.close()


def _as_010(store: RedisStore, workflow_id: str, workflow_type: str, status: WorkflowStatus, created: float) -> None:
    """A run as 0.1.0 left it: its hash where 0.2.0 reads it, listed only in the global index."""
    store.create(WorkflowState(workflow_id=workflow_id, run_id="r-" + workflow_id, workflow_type=workflow_type,
                               status=WorkflowStatus.RUNNING, input=None, created_at=created, updated_at=created,
                               history=(Event(1, EventType.WORKFLOW_STARTED, created, {"input": None}),)))
    r: redis.Redis = store.redis
    r.hset(store.keys(workflow_id)[0], "status", status.value)
    for name in ("all", f"type:{workflow_type}", f"status:{status.value}"):
        r.zrem(store.index_prefix(workflow_id) + name, workflow_id)   # not in the shard's indexes ...
        r.zadd(f"{store.prefix}:index:{name}", {workflow_id: created})  # ... only in 0.1.0's


def test_runs_listed_by_0_1_0_are_listed_after_the_upgrade(store: RedisStore) -> None:
    runs = [(f"old-{i}", "order" if i % 2 else "refund",
             WorkflowStatus.RUNNING if i % 3 else WorkflowStatus.COMPLETED, 1000.0 + i) for i in range(40)]
    for run in runs:
        _as_010(store, *run)
    assert store.list(WorkflowFilter(limit=100)) == []            # what an upgraded worker saw before
    assert store.adopt_listing(batch=7) == 40
    listed = store.list(WorkflowFilter(limit=100))
    assert [s.workflow_id for s in listed] == [wid for wid, *_ in sorted(runs, key=lambda r: -r[3])]
    running = {wid for wid, _, status, _ in runs if status is WorkflowStatus.RUNNING}
    assert {s.workflow_id for s in store.list(WorkflowFilter(status=WorkflowStatus.RUNNING, limit=100))} == running
    assert store.counts("order")["completed"] == sum(1 for _, t, s, _ in runs
                                                     if t == "order" and s is WorkflowStatus.COMPLETED)
    assert not list(store.redis.scan_iter(f"{store.prefix}:index:*"))  # the old index is gone
    assert store.adopt_listing() == 0                                     # and a second worker finds nothing


def test_a_run_closed_while_it_is_adopted_is_listed_once_under_its_last_status(store: RedisStore) -> None:
    _as_010(store, "old-1", "order", WorkflowStatus.RUNNING, 1000.0)
    store.redis.hset(store.keys("old-1")[0], "status", WorkflowStatus.FAILED.value)   # closed before the move
    assert store.adopt_listing() == 1
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=WorkflowStatus.FAILED))] == ["old-1"]
    assert store.list(WorkflowFilter(status=WorkflowStatus.RUNNING)) == []
