"""Fleet-wide activity limits (issue 18 item 3): two workers, one activity limited to 10 starts a second
and 5 running at once (`benchmarks/limits_workload.py`), 600 attempts (60 runs x 10 calls) started at once.
The activity notes its own start and end by the history Redis's clock; from those notes this prints the
most starts in any 1-s window (goal <= 10), the most running at once (goal <= 5), the throughput (starts
per second between the first and the last start; goal >= 95% of 10/s), the attempts failed (goal 0) and
how many waits for a permit the histories recorded.

Run from a checkout (the workers import the checkout the script is in):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_limits.py [--runs 60 --calls 10 --seconds 0.3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beluga import workflow  # noqa: E402
from benchmarks.limits_workload import NOTES  # noqa: E402
from tests.executors.test_executor_features import most_at_once, most_in_a_window  # noqa: E402
from tests.fleet import WORKER_IMPORTS, Worker, fleet_env, redis_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.3, help="how long each attempt runs")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker")
    args = parser.parse_args()
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        env = fleet_env(url, BELUGA_IMPORTS=f"{WORKER_IMPORTS},benchmarks.limits_workload")
        workers = [Worker(env, f"limits{i}", Path(tmp), concurrency=args.concurrency) for i in range(2)]
        try:
            for w in workers:
                w.wait_ready()
            r = redis.Redis.from_url(url)
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
            handles = [ex.execute("limited_fanout", workflow.WorkflowOptions(
                id=f"limits-{i}-{uuid.uuid4().hex[:4]}", input={"calls": args.calls, "seconds": args.seconds}))
                for i in range(args.runs)]
            for h in handles:
                assert h.result(timeout=600) == list(range(args.calls))
            spans = [tuple(map(float, raw.split())) for raw in r.lrange(NOTES, 0, -1)]
            starts = sorted(s for s, _ in spans)
            histories = [ex.describe(h.id).history for h in handles]
            failed = sum(1 for hist in histories for e in hist if e.type == "activity_failed")
            waits = [e.attrs["why"] for hist in histories for e in hist if e.type == "activity_waiting"]
            rate = (len(starts) - 1) / (starts[-1] - starts[0])
            print(f"{len(starts)} attempts on 2 workers (-c {args.concurrency}), limit 10/s and 5 at once, "
                  f"each {args.seconds:g}s: most starts in a 1-s window {most_in_a_window(starts)} (<= 10), "
                  f"most running at once {most_at_once(spans)} (<= 5), throughput {rate:.2f}/s "
                  f"({rate / 10:.1%} of the limit, >= 95%), attempts failed {failed}, waits recorded "
                  f"{len(waits)} ({waits.count('rate')} for the rate, {waits.count('concurrency')} for "
                  f"concurrency), wall {starts[-1] - starts[0]:.1f}s")
        finally:
            for w in workers:
                w.stop()


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(benchmark took {time.time() - t0:.0f}s)")
