"""The contract's listing tests (id prefix, stuck, kept copies, cursors both ways, counts) on a real
three-node Redis Cluster, whose shards' indexes live on different nodes; and the Redis listing's own
details."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from beluga.core.records import WorkflowFilter, WorkflowStatus
from beluga.stores import RedisStore
from tests.stores import test_contract as contract

LISTING: list[Callable[..., None]] = [
    contract.test_list_filters_and_orders_newest_first, contract.test_counts_by_status_follow_appends,
    contract.test_list_by_id_prefix_takes_the_prefix_literally, contract.test_list_stuck_runs_apart,
    contract.test_kept_copies_can_be_left_out_of_lists_and_counts]


@pytest.fixture
def cluster_store(cluster_url: str) -> Iterator[RedisStore]:
    store = RedisStore(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("test", LISTING, ids=[t.__name__ for t in LISTING])
def test_listing_on_a_cluster(cluster_store: RedisStore, test: Callable[..., None]) -> None:
    test(cluster_store)


@pytest.mark.parametrize("f", [WorkflowFilter(), WorkflowFilter(status=WorkflowStatus.COMPLETED),
                               WorkflowFilter(id_prefix="w1", workflow_type="ship")], ids=["all", "status", "prefix"])
def test_cursors_on_a_cluster(cluster_store: RedisStore, f: WorkflowFilter) -> None:
    contract.test_cursors_page_both_ways_through_every_run_once(cluster_store, f)

