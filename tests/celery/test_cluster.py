"""The fleet with its histories on a real three-node Redis Cluster (`redis+cluster://`), the broker a
plain server: every script touches one slot (the cluster refuses any other), runs land on every node, and
a worker killed with -9 loses nothing. The executor contract suite runs against the same kind of fleet
(tests/executors/conftest.py, backend `celery-cluster`)."""

from __future__ import annotations

import collections
import signal
import time
import uuid
from pathlib import Path

import pytest

from beluga import workflow
from beluga.core.records import Append
from beluga.core.records import EventType as E
from beluga.runs import new_run_state
from beluga.stores.redis import SHARDS, RedisStore, connect, shard_of
from tests.conftest import Fleet
from tests.fleet import redis_cluster_processes, redis_server
from tests.timing import bounded_by


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
    try:
        results = [h.result(timeout=120) for h in handles]
    except TimeoutError:
        raise AssertionError(f"a run did not finish; the broker's state: {fleet.dump_broker()}") from None
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


def test_writes_wait_for_the_replica_of_the_primary_that_holds_their_slot(tmp_path: Path) -> None:
    """BELUGA_APPEND_REPLICAS on a Redis Cluster (three primaries, a replica each): a run's writes are
    confirmed by WAIT on the connection of the primary that holds the run's slot. With one replica
    stopped, the writes to that primary fail with ReplicationError within the timeout (they reached the
    primary: the run is there, only its durability is in doubt); the writes to the others go on."""
    with redis_cluster_processes(tmp_path, replicas=True) as cluster:
        # The writes that must succeed wait for their replica as long as a loaded machine may need; those
        # to the stopped replica's primary are made through a store that gives up after 0.5 s.
        store = RedisStore(cluster.url, prefix="w", append_replicas=1, append_replicas_timeout=30)
        prompt = RedisStore(cluster.url, prefix="w", append_replicas=1, append_replicas_timeout=0.5)
        by_shard = {}
        n = 0
        while len(by_shard) < SHARDS:  # one workflow id in each shard, so every primary takes writes
            by_shard.setdefault(shard_of(f"wf-{n}"), f"wf-{n}")
            n += 1
        states = {wid: new_run_state("waiter", wid, None, None, None, time.time()) for wid in by_shard.values()}
        for state in states.values():
            store.create(state)
        node_of = {wid: store.redis.get_node_from_key(store.keys(wid)[0]).port for wid in states}
        assert len(set(node_of.values())) == 3
        stopped = node_of[by_shard[0]]
        replica = cluster.replica_of(stopped)
        replica.send_signal(signal.SIGSTOP)
        try:
            for wid, state in states.items():
                event = workflow.Event(2, E.SIGNAL_RECEIVED, time.time(), {"name": "go", "payload": 1,
                                                                            "sender_id": None})
                append = [Append(wid, state.run_id, 1, (event,))]
                if node_of[wid] == stopped:
                    started = time.monotonic()
                    with pytest.raises(workflow.ReplicationError, match="only 0 of 1 replicas"):
                        prompt.append(append)
                    assert time.monotonic() - started < bounded_by(0.5)  # WAIT gave up at its timeout
                else:
                    store.append(append)
                assert store.version(wid)[1] == 2  # on the primary either way
        finally:
            replica.send_signal(signal.SIGCONT)
        store.close()
        prompt.close()
