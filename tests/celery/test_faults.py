"""Faults with real processes: workers killed with -9 (whole, or one pool process) while workflows
run. Nothing may be lost, no history event duplicated, and every activity's effect recorded once per
idempotency key."""

from __future__ import annotations

import collections
import random
import time
import uuid

import pytest
import redis

from beluga import workflow
from beluga.core.records import EventType as E
from beluga.stores.redis import SHARDS
from tests.timing import SLACK


def _check_history(history: tuple[workflow.Event, ...]) -> None:
    assert [e.id for e in history] == list(range(1, len(history) + 1))
    scheduled = collections.Counter(e.attrs["seq"] for e in history if e.type == E.ACTIVITY_SCHEDULED)
    completed = collections.Counter(e.attrs["seq"] for e in history if e.type == E.ACTIVITY_COMPLETED)
    started = collections.Counter((e.attrs["seq"], e.attrs["attempt"]) for e in history
                                  if e.type == E.ACTIVITY_STARTED)
    assert set(scheduled.values()) <= {1}, scheduled
    assert set(completed.values()) <= {1}, completed
    assert set(started.values()) <= {1}, started
    assert sum(1 for e in history if e.type == E.WORKFLOW_COMPLETED) == 1


def _diagnose(ex: workflow.DurableExecutor, handles: list, fleet) -> str:
    """Where the unfinished runs stand, for a failure message worth reading."""
    r = redis.Redis.from_url(fleet.url)
    lines = []
    for h in handles:
        state = ex.describe(h.id)
        if state.status.is_open:
            store = ex.store
            tail = [(e.id, e.type, e.attrs.get("seq"), e.attrs.get("attempt")) for e in state.history[-4:]]
            lines.append(f"{h.id}: last events {tail}"
                         f" inbox={r.llen(store.keys(h.id)[2])} lease={r.get(store.key(h.id, 'lease'))}"
                         f" attempts={r.hgetall(store.key(h.id, 'attempts'))}")
    for shard in range(SHARDS):
        tag = f"beluga:{{s{shard}}}"
        lines.append(f"shard {shard}: deadlines={r.zrange(f'{tag}:dispatched', 0, -1, withscores=True)} "
                     f"dirty={r.zrange(f'{tag}:dirty', 0, -1, withscores=True)} wake={r.smembers(f'{tag}:wake')}")
    lines.append(f"now={time.time()}")
    lines.append(f"broker queue len={r.llen('beluga')} unacked={r.hlen('unacked')}")
    for w in fleet.workers:
        noteworthy = [line for line in w.log().splitlines() if any(k in line for k in ("ERROR", "WARN", "Traceback"))]
        lines.append(f"--- {w.name} alive={w.proc.poll() is None}\n" + "\n".join(noteworthy)[-3000:])
    return "\n".join(lines)


@pytest.mark.parametrize("eager", ["8", "0"], ids=["eager activities", "no eager activities"])
def test_chaos_kill_workers_and_pool_processes(private_fleet, eager: str) -> None:
    """Workers killed whole and pool processes killed one by one, with -9, while 50 runs of 10 steps run;
    with eager activities (most attempts run in the process whose report led to them) and without (each
    attempt a message, taken by either process of a pool: the catch-up from the events a message
    carries, and deadlines renewed only by the scheduler's round, are then in play)."""
    fleet = private_fleet
    workers = [fleet.start_worker(f"c{i}", BELUGA_EAGER_ACTIVITIES=eager) for i in range(3)]
    for w in workers:
        w.wait_ready()
    ex = fleet.executor()
    handles = [ex.execute("fleet_steps", workflow.WorkflowOptions(
        id=f"chaos-{i}-{uuid.uuid4().hex[:6]}", input={"steps": 10, "sleep": 0.05})) for i in range(50)]
    rng = random.Random(7)
    kills = {"worker": 0, "pool": 0}
    for round_ in range(8):
        time.sleep(rng.uniform(0.3, 0.8))
        alive = [w for w in fleet.workers if w.proc.poll() is None]
        victim = rng.choice(alive)
        if round_ % 2 == 0 and len(alive) > 1:
            victim.kill9()
            kills["worker"] += 1
            fleet.start_worker(f"r{round_}", BELUGA_EAGER_ACTIVITIES=eager).wait_ready()
        else:
            pids = victim.pool_pids()
            if pids:
                import os
                import signal
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills["pool"] += 1
    try:
        results = [h.result(timeout=120) for h in handles]
    except TimeoutError:
        raise AssertionError(_diagnose(ex, handles, fleet)) from None
    assert results == [sum(range(1, 11))] * 50
    assert kills["worker"] >= 3 and kills["pool"] >= 3
    r = redis.Redis.from_url(fleet.url)
    effects = {k.decode() for k in r.smembers("test:effects")}
    runs = {k.decode(): int(v) for k, v in r.hgetall("test:runs").items()}
    for h in handles:
        state = ex.describe(h.id)
        _check_history(state.history)
        keys = {f"{h.id}:{state.run_id}:{seq}" for seq in range(1, 11)}
        assert keys <= effects, keys - effects
    assert len(effects) == 500
    assert all(n >= 1 for n in runs.values())
    # the kills hit work in flight: attempts were lost, recorded as such, and dispatched again
    lost = [(h.id, e.attrs["seq"], e.attrs["attempt"]) for h in handles for e in ex.describe(h.id).history
            if e.type == E.ACTIVITY_FAILED and e.attrs["error"]["type"] == "WorkerLost"]
    assert lost, f"no kill hit an attempt in flight ({kills})"


def test_lost_worker_activity_is_dispatched_again_quickly(private_fleet) -> None:
    """A worker that dies whole mid-activity leaves its message unacked until the broker's visibility
    timeout (an hour); the activity lease notices within seconds and a surviving worker runs it."""
    fleet = private_fleet
    doomed = fleet.start_worker("doomed", concurrency=1).wait_ready()
    ex = fleet.executor()
    handle = ex.execute("fleet_steps", workflow.WorkflowOptions(id=f"lost-{uuid.uuid4().hex[:6]}",
                                                                input={"steps": 1, "sleep": 30}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            e.type == E.ACTIVITY_STARTED for e in ex.describe(handle.id).history):
        time.sleep(0.05)
    time.sleep(0.5)  # the attempt is running in the doomed worker now
    doomed.kill9()
    killed_at = time.time()
    survivor = fleet.start_worker("survivor").wait_ready()
    ready_at = time.time()
    # the re-run still sleeps 30 s: only wait to see it dispatched as attempt 2 under the retry policy
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = ex.describe(handle.id).history
        if any(e.type == E.ACTIVITY_STARTED and e.attrs["attempt"] == 2 for e in history):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"lost attempt not re-dispatched: {[e.type for e in history]}")
    # dispatched again once the lease (3 s, tests.fleet.fleet_env) ran out and a worker was there to see
    # it: a scheduler round and a dispatch later, read on the recorded start of attempt 2
    restarted = next(e for e in history if e.type == E.ACTIVITY_STARTED and e.attrs["attempt"] == 2)
    assert restarted.timestamp - max(killed_at + 3.0, ready_at) < SLACK, restarted.timestamp - killed_at
    failed = [e for e in history if e.type == E.ACTIVITY_FAILED]
    assert failed[0].attrs["error"]["type"] == "WorkerLost"
    assert survivor.proc.poll() is None
