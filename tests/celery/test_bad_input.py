"""Malformed and foreign messages on Beluga's queues: each is rejected and logged, no worker crashes,
no workflow is lost, and the fleet keeps working."""

from __future__ import annotations

import pickle
import time
import uuid

import kombu
import redis

from beluga import workflow
from beluga.celery.fleet import Fleet
from beluga.stores.redis import RedisStore
from tests.fleet import wait_progress


def _publish(url: str, body: bytes | str, content_type: str, headers: dict | None = None) -> None:
    with kombu.Connection(url) as conn:
        conn.Producer().publish(body, routing_key="beluga", exchange="", content_type=content_type,
                                content_encoding="binary" if isinstance(body, bytes) else "utf-8",
                                headers=headers or {}, serializer=None)


def test_foreign_and_malformed_messages_are_rejected(fleet) -> None:
    ex = fleet.executor()
    parked = ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=f"bad-{uuid.uuid4().hex[:6]}"))
    evil = pickle.dumps(("os.system", "echo pwned"))
    task = {"lang": "py", "id": str(uuid.uuid4()), "retries": 0}
    _publish(fleet.url, b"\xc1\xff\x00garbage", "application/x-beluga", {**task, "task": "beluga.activity"})
    _publish(fleet.url, '{"foreign": "json"}', "application/json", {**task, "task": "beluga.coordinate"})
    _publish(fleet.url, evil, "application/x-python-serialize", {**task, "task": "beluga.activity"})
    _publish(fleet.url, b"\x93\x90\x80\x80", "application/x-beluga", {**task, "task": "evil.unknown_task"})
    _publish(fleet.url, b"no headers at all", "application/octet-stream")
    app = ex.app
    app.send_task("beluga.activity", args=("only", "three", "args"))               # wrong arity
    app.tasks["beluga.coordinate"].apply_async(("no-such-workflow-run",))        # wake for an unknown run
    store = RedisStore(fleet.url)
    Fleet(store).redis.rpush(store.keys(parked.id)[2], b"\xc1 not msgpack")      # garbage in a run's inbox
    ex.signal(parked.id, workflow.Signal("go", "still fine"))
    assert parked.result(timeout=20) == "got still fine"
    time.sleep(1.0)
    logs = "\n".join(w.log() for w in fleet.workers)
    assert all(w.proc.poll() is None for w in fleet.workers), logs[-3000:]
    assert "ContentDisallowed" in logs or "disallowed" in logs.lower()
    assert "unregistered task" in logs.lower()
    assert "dropping an undecodable message in the inbox" in logs
    assert "pwned" not in logs.replace("echo pwned", "")
    # the queue is drained: nothing poisonous stays behind to be redelivered
    assert redis.Redis.from_url(fleet.url).llen("beluga") == 0
    # and the fleet still runs new work
    again = ex.execute("order_workflow", workflow.WorkflowOptions(id=f"after-bad-{uuid.uuid4().hex[:6]}", input="X"))
    wait_progress(ex, again.id)
    ex.signal(again.id, workflow.Signal("approve", "approved"))
    assert again.result(timeout=20) == "order X processed"


def test_two_hundred_parked_behind_a_worker_of_concurrency_two(private_fleet) -> None:
    """Parked runs hold no worker slot: 200 wait on a signal behind 2 pool processes, then all finish."""
    fleet = private_fleet
    fleet.start_worker("solo", concurrency=2).wait_ready()
    ex = fleet.executor()
    ids = [f"parked-{i}-{uuid.uuid4().hex[:6]}" for i in range(200)]
    handles = [ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=wid)) for wid in ids]
    r = redis.Redis.from_url(fleet.url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and r.llen("beluga"):  # every start has been coordinated
        time.sleep(0.1)
    assert all(h.status() is workflow.WorkflowStatus.RUNNING for h in handles)
    for wid in ids:
        ex.signal(wid, workflow.Signal("go", wid))
    assert [h.result(timeout=60) for h in handles] == [f"got {wid}" for wid in ids]
