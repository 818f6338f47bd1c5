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
    contract.test_kept_copies_can_be_left_out_of_lists_and_counts,
    contract.test_where_matches_typed_equality_and_ranges, contract.test_upserted_attributes_are_indexed_by_the_append,
    contract.test_replaced_and_deleted_runs_leave_the_attribute_index, contract.test_where_pages_with_cursors]


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



def test_attribute_indexes_are_left_empty_by_upserts_replacements_and_deletes(redis_url: str) -> None:
    """lib/attrs.lua unlists a run from the indexes it left: no member (and so no key) stays behind."""
    from beluga.core.records import Append

    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        for i in range(6):
            store.create(contract.tagged(f"w{i}", float(i), {"customer": f"c-{i}", "n": i, "vip": i % 2 == 0}))
        assert store.redis.keys(f"{store.prefix}*index:sa:*")  # listed while they have attributes
        for i in range(3):
            store.append([Append(f"w{i}", "r1", 1, (contract.ev(2),), search_attributes={"customer": "same"})])
        store.create(contract.tagged("w3", 9.0, {}, rid="r2"), replace_run_id="r1")
        for i in range(6):
            store.delete(f"w{i}")
        assert store.redis.keys(f"{store.prefix}*index:sa:*") == []
    finally:
        store.close()
