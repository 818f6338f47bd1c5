"""The fleet with its histories on a real three-node Redis Cluster (`redis+cluster://`), the broker a
plain server: every script touches one slot (the cluster refuses any other), runs land on every node, and
a worker killed with -9 loses nothing. The executor contract suite runs against the same kind of fleet
(tests/executors/conftest.py, backend `celery-cluster`)."""

from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path

import pytest

from beluga import workflow
from beluga.core.records import EventType as E
from beluga.stores.redis import SHARDS, connect
from tests.conftest import Fleet
from tests.fleet import redis_server


def test_the_cluster_client_and_its_url(cluster_url: str) -> None:
    from redis.cluster import RedisCluster

    client = connect(cluster_url)
    assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
    tags = {client.get_node_from_key(f"beluga:{{s{shard}}}:x").name for shard in range(SHARDS)}
    assert len(tags) == 3, "the shards' hash tags should spread over every node"
    client.close()


@pytest.fixture
def cluster_workers(tmp_path: Path, cluster_url: str):
    """Workers of their own (a key prefix of their own on the session's cluster, a broker of their own)."""
    with redis_server() as broker:
        fleet = Fleet(broker, tmp_path, redis_url=cluster_url)
        fleet.prefix = f"k{uuid.uuid4().hex[:6]}"
        try:
            yield fleet
        finally:
            fleet.stop()


def test_a_whole_worker_killed_with_minus_9_loses_nothing_on_a_cluster(cluster_workers: Fleet) -> None:
    fleet = cluster_workers
    env = {"BELUGA_KEY_PREFIX": fleet.prefix}
    workers = [fleet.start_worker(f"k{i}", **env) for i in range(2)]
    for w in workers:
        w.wait_ready()
    ex = fleet.executor(key_prefix=fleet.prefix)
    run = uuid.uuid4().hex[:6]
    handles = [ex.execute("fleet_steps", workflow.WorkflowOptions(
        id=f"kill-{run}-{i}", input={"steps": 6, "sleep": 0.05})) for i in range(24)]
    time.sleep(1.0)
    workers[0].kill9()
    fleet.start_worker("k-after", **env).wait_ready()
    results = [h.result(timeout=120) for h in handles]
    assert results == [sum(range(1, 7))] * 24

    client = connect(fleet.redis_url)
    nodes = {client.get_node_from_key(ex.store.keys(h.id)[0]).name for h in handles}
    assert len(nodes) >= 2, "the runs should live on more than one node"
    effects = {k.decode() for k in client.smembers("test:effects") if k.decode().startswith(f"kill-{run}-")}
    for h in handles:
        state = ex.describe(h.id)
        ids = [e.id for e in state.history]
        assert ids == list(range(1, len(ids) + 1))
        completed = collections.Counter(e.attrs["seq"] for e in state.history if e.type == E.ACTIVITY_COMPLETED)
        assert set(completed.values()) == {1} and len(completed) == 6
        assert {f"{h.id}:{state.run_id}:{seq}" for seq in range(1, 7)} <= effects
    assert len(effects) == 24 * 6
    client.close()
