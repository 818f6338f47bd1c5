"""Ten thousand parked runs cost a store row each, not a thread or a live stack each: with 500 runs
kept live, the rest are evicted and replayed from their history when a signal wakes them."""

from __future__ import annotations

import random
import time

from beluga import workflow
from beluga.stores import InMemoryStore
from tests.executors import workflows as W

N, WOKEN, CACHE = 10_000, 200, 500


def test_ten_thousand_parked_workflows() -> None:
    store = InMemoryStore()
    started = time.perf_counter()
    with workflow.new("default", workflow.Config(store=store, extra={"cache_size": CACHE})) as ex:
        handles = [ex.execute(W.wf_parked, workflow.WorkflowOptions(id=f"parked-{i}", input=i)) for i in range(N)]
        t_started = time.perf_counter()

        everything = workflow.WorkflowFilter(status=workflow.WorkflowStatus.RUNNING, limit=2 * N)
        deadline = time.monotonic() + 60
        while True:  # every run took its first step (its marker is stored) and is parked
            running = store.list(everything)
            parked = sum(1 for s in running if len(s.history) == 2)
            if parked == N or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(running) == N and parked == N
        assert all(s.history[-1].type == "marker_recorded" for s in running)
        t_parked = time.perf_counter()

        woken = random.Random(7).sample(range(N), WOKEN)  # mostly evicted runs
        for i in woken:
            ex.signal(f"parked-{i}", workflow.Signal("go", 1_000_000))
        assert [handles[i].result(timeout=30) for i in woken] == [i + 1_000_000 for i in woken]
        t_woken = time.perf_counter()
        assert ex.query(f"parked-{woken[0]}", "status") is workflow.WorkflowStatus.COMPLETED
        assert ex.query("parked-0" if 0 not in woken else "parked-1", "status") is workflow.WorkflowStatus.RUNNING
    total = t_woken - started
    print(f"\n{N} started in {t_started - started:.2f}s, all parked after {t_parked - started:.2f}s, "
          f"{WOKEN} woken in {t_woken - t_parked:.2f}s; total {total:.2f}s")
    assert total < 30
