"""Lost data is detected, never papered over; what a call accepts, every worker can read (issue 20,
items 4 and 5). Real `redis-server`-compatible servers and real `celery worker` processes; the faults
are injected into work in flight: a Redis that may evict keys, a run's events stream deleted as an
eviction would delete it, a run whose stored input this Beluga cannot read (as a newer client would
write it) in the same wake batch as the runs of its shard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgpack
import pytest
import redis
from werkzeug.test import Client

from beluga import console, workflow
from beluga.runs import new_run_state
from beluga.stores.redis import RedisStore, shard_of
from beluga.workflow import Signal, WorkflowOptions, WorkflowStatus
from tests.conftest import Fleet
from tests.executors.helpers import eventually
from tests.fleet import ROOT, ServerProcess, redis_server

STEPS = 12
RESULT = sum(i + 1 for i in range(STEPS))  # fleet_steps adds up its steps' i + 1


def _wait(check, timeout: float, what: str):  # noqa: ANN001, ANN202 - a test helper
    return eventually(check, timeout, interval=0.02, what=what)


def _started(f: Fleet, *names: str) -> None:
    for w in [f.start_worker(n) for n in names]:
        w.wait_ready()


# --- (a) an evicting Redis is refused at start ------------------------------------------------------------
def test_workers_and_clients_refuse_an_evicting_history_redis(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "lru", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    f = Fleet(server.url, tmp_path)
    try:
        refused = f.start_worker("lru")
        assert refused.proc.wait(60) != 0, refused.log()[-2000:]
        log = refused.log()
        assert "refusing to start" in log and "maxmemory-policy allkeys-lru" in log, log[-2000:]
        assert "noeviction" in log
        with pytest.raises(workflow.ConfigurationError, match="maxmemory-policy allkeys-lru"):
            f.executor()
        # the same server set to noeviction: both start, and a run completes
        server.client().config_set("maxmemory-policy", "noeviction")
        _started(f, "ok")
        ex = f.executor()
        assert ex.execute("fleet_steps", WorkflowOptions(input={"steps": 2})).result(timeout=60) == 3
    finally:
        f.stop()
        server.stop()


# --- (b) a run's events stream lost in flight ---------------------------------------------------------------
def test_a_run_whose_events_are_lost_in_flight_is_held_stuck_and_the_others_complete(private_fleet: Fleet) -> None:
    f = private_fleet
    _started(f, "w1", "w2")
    ex = f.executor()
    store = RedisStore(f.url)
    r = redis.Redis.from_url(f.url)
    tag = uuid.uuid4().hex[:6]
    ids = [f"lost-{tag}-{i}" for i in range(10)]
    handles = [ex.execute("fleet_steps", WorkflowOptions(id=wid, input={"steps": STEPS, "sleep": 0.15}))
               for wid in ids]
    victim = ids[0]
    run_key, events_key, _ = store.keys(victim)
    dispatched = f"{store.tag(victim)}:dispatched"

    def in_flight() -> bool:  # its history is in its stream (past 8 events) and an attempt of it runs
        _, version = store.version(victim)
        running = [m for m in r.zrange(dispatched, 0, -1) if m.startswith(victim.encode() + b"\0")]
        return 12 <= version < 2 * STEPS and bool(running)

    _wait(in_flight, 60, f"{victim} in flight past its 8th event")
    pipe = r.pipeline(transaction=True)  # the eviction, and what the run held at that instant
    pipe.delete(events_key)
    pipe.hget(run_key, "version")
    deleted, at_fault = pipe.execute()
    at_fault = int(at_fault)
    assert deleted == 1
    open_at_fault = sum(1 for wid in ids[1:] if ex.summary(wid).status.is_open)
    assert open_at_fault >= 5  # the others were in flight too

    for h in handles[1:]:
        assert h.result(timeout=90) == RESULT

    state = _wait(lambda: (s := ex.describe(victim)).error and s, 30, "the victim's reason in describe().error")
    assert state.status is WorkflowStatus.RUNNING
    assert state.error["type"] == "HistoryLost" and "missing" in state.error["message"], state.error
    assert "maxmemory-policy" in state.error["message"]
    # the coordinator marked it, so a summary read (status checks, result waits) says so too
    _wait(lambda: (ex.summary(victim).error or {}).get("type") == "HistoryLost", 30, "the mark on the run")
    time.sleep(3 * 3.0)  # three leases: any attempt in flight at the fault has reported or lapsed meanwhile
    assert int(r.hget(run_key, "version")) == at_fault  # nothing was appended past the hole
    assert not r.exists(events_key)                     # not even a recreated stream of later events
    with pytest.raises(TimeoutError):
        handles[0].result(timeout=1)
    logs = "\n".join(w.log() for w in f.workers)
    held = [line for line in logs.splitlines() if "is held stuck" in line and victim in line]
    assert 1 <= len(held) <= 6, held  # once per process at most (2 workers x a main and 2 pool processes)
    assert "given after" not in logs  # the replay of a partial history never ran


# --- (c) a run this Beluga cannot read, in the wake batch of its shard -------------------------------------
def _ids_in_shard(prefix: str, shard: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        wid = f"{prefix}:{i}"  # ids with colons among them
        if shard_of(wid) == shard:
            out.append(wid)
        i += 1
    return out


def test_a_run_with_an_unreadable_input_stops_neither_its_shard_nor_a_listing(private_fleet: Fleet) -> None:
    f = private_fleet
    _started(f, "w1", "w2")
    ex = f.executor()
    shard = 5
    good = _ids_in_shard(f"shard-{uuid.uuid4().hex[:6]}", shard, 8)
    bad = _ids_in_shard(f"newer-{uuid.uuid4().hex[:6]}", shard, 1)[0]
    handles = [ex.execute("fleet_wait_signal", WorkflowOptions(id=wid)) for wid in good]
    inbox = ex.store.redis.exists
    _wait(lambda: not inbox(*(ex.store.keys(w)[2] for w in good)), 30, "every good run parked (its start taken)")

    # Hold the shard's wake task back while the bad run is written (as a newer client writes a run whose
    # input is an ext type this Beluga does not know) and every good run is signalled: then all of them
    # are in the shard's wake set when its task takes them, in one batch.
    fleet = ex.fleet
    r = fleet.redis
    waking = f"{fleet.store.shard_tag(shard)}:waking"

    def hold_wakes() -> bool:  # once the shard's last wake task let go (it may linger a moment): ours
        if r.set(waking, "1", px=20_000, nx=True):
            time.sleep(0.3)
            return bool(r.exists(waking))
        return False

    _wait(hold_wakes, 30, "the shard's wake lease held")
    state = new_run_state("fleet_wait_signal", bad, msgpack.ExtType(99, b"from a newer Beluga"), None, None,
                          time.time())
    fleet.start_run(state)
    for i, wid in enumerate(good):
        payload = float("nan") if i == 0 else {(1, "tuple key"): i}  # values that must round-trip
        ex.signal(wid, Signal("go", payload))
    wake_set = f"{fleet.store.shard_tag(shard)}:wake"
    r.sadd(wake_set, bad)
    assert r.smembers(wake_set) == {w.encode() for w in [*good, bad]}
    r.delete(waking)
    assert fleet.wake([bad]) == [shard]  # the shard's wake task is ours to send: it takes all nine at once
    ex._rt.sender.wake_shard(shard)

    results = [h.result(timeout=60) for h in handles]
    assert results[0] == "got nan" and all(str(i) in got for i, got in enumerate(results) if i), results
    # the bad run is isolated: held stuck with its reason, listed with it
    bad_state = _wait(lambda: (s := ex.describe(bad)).error and s, 30, "the bad run's reason")
    assert bad_state.status is WorkflowStatus.RUNNING and bad_state.error["type"] == "UnreadableRun"
    listed = {s.workflow_id: s for s in ex.store.list()}
    assert set(good) | {bad} <= set(listed) and listed[bad].error["type"] == "UnreadableRun"
    # the console lists it as stuck, with its reason
    page = Client(console.create_app(ex, read_only=True)).get("/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert bad in body and "UnreadableRun" in body
    # and so does `beluga list`
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "beluga", "--store", f.url, "list", "--json", "--limit", "100"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {row["workflow_id"]: row for row in json.loads(out.stdout)}
    assert rows[bad]["stuck"] and "UnreadableRun" in rows[bad]["error"]
    logs = "\n".join(w.log() for w in f.workers)
    assert any("is held stuck" in line and bad in line for line in logs.splitlines()), logs[-3000:]


def test_a_vanished_run_with_waiting_messages_is_reported_once(private_fleet: Fleet) -> None:
    """A run whose summary was evicted while its inbox remained: an ERROR once and the inbox dropped,
    not a retry forever."""
    f = private_fleet
    f.start_worker("w1", concurrency=1).wait_ready()  # one pool process: "once" is once per process
    ex = f.executor()
    wid = f"vanish-{uuid.uuid4().hex[:6]}"
    ex.execute("fleet_wait_signal", WorkflowOptions(id=wid))
    store = ex.store
    _wait(lambda: not store.redis.exists(store.keys(wid)[2]), 30, "the run parked (its start taken)")
    r = store.redis
    ex.signal(wid, Signal("go", "late"))
    r.delete(store.keys(wid)[0])  # the run hash evicted (its inbox may hold the signal still)
    ex.fleet.push(wid, {"k": "start"})  # a message for it, as a late report would be
    for s in ex.fleet.wake([wid]):
        ex._rt.sender.wake_shard(s)
    _wait(lambda: not r.exists(store.keys(wid)[2]), 30, "the inbox dropped")
    log = f.workers[0].log()
    lines = [line for line in log.splitlines() if "no run: its summary is gone" in line and wid in line]
    assert len(lines) == 1 and "ERROR" in lines[0], log[-2000:]


def test_redis_server_helper_is_noeviction() -> None:
    """The fleet fixtures' servers run noeviction, the only policy the fleet accepts."""
    with redis_server() as url:
        assert redis.Redis.from_url(url).config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
