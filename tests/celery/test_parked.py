"""Parked runs cost only what they must: a run waiting for a signal holds no worker and at most 1.5 KB of
Redis (its run hash with its first events inline, its entries in the listing indexes), and waking many
at once coordinates them in batches per shard."""

from __future__ import annotations

import time

import redis

from beluga import workflow

RUNS = 1000
MAX_BYTES_PER_PARKED_RUN = 1536


def _idle(r: redis.Redis, ex: workflow.DurableExecutor, timeout: float = 120.0) -> None:
    """Every run parked: the broker's queue and its unacknowledged messages empty, no inbox waiting (the
    sweep has forgotten every dirty mark, so what is left is what a parked run keeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dirty = sum(r.zcard(k) for k in r.scan_iter(match="beluga:{s*}:dirty", count=1000))
        if r.llen("beluga") == 0 and r.hlen("unacked") == 0 and dirty == 0:
            return
        time.sleep(0.2)
    raise TimeoutError("the fleet did not settle")


def test_a_parked_run_costs_at_most_1_5_kb_of_redis_and_a_signal_wakes_it(private_fleet) -> None:
    fleet = private_fleet
    fleet.start_worker("p1").wait_ready()
    ex = fleet.executor()
    r = redis.Redis.from_url(fleet.url)
    warm = [ex.execute("fleet_wait_signal", workflow.WorkflowOptions()) for _ in range(50)]
    _idle(r, ex)
    before = int(r.info("memory")["used_memory"])
    handles = [ex.execute("fleet_wait_signal", workflow.WorkflowOptions()) for _ in range(RUNS)]
    _idle(r, ex)
    after = int(r.info("memory")["used_memory"])
    assert all(ex.store.version(h.id)[1] == 1 for h in handles[::50])   # parked after their first event
    per_run = (after - before) / RUNS
    assert per_run <= MAX_BYTES_PER_PARKED_RUN, f"{per_run:.0f} B per parked run"
    assert r.exists(ex.store.keys(handles[0].id)[1]) == 0                 # no events key of its own

    for i, h in enumerate(warm + handles):
        ex.signal(h.id, workflow.Signal("go", f"go {i}"))
    assert [h.result(timeout=120) for h in warm + handles] == [f"got go {i}" for i in range(len(warm) + RUNS)]
