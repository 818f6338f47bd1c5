"""A broker backlog longer than the lease: what it costs Redis (issue 20, item 7).

One worker (`-c 2`, no eager activities, lease 2 s) and N runs of one activity each (`fleet_steps`,
20 ms), all started at once, so that N messages queue up in the activity's broker queue and most wait
there longer than the lease. Reports the history Redis's CPU time (INFO cpu, user + sys) over the whole
drain, its LRANGE calls (the scheduler used to read whole queues for each lapsed attempt), the wall time,
and how many attempts were sent again and how many copies were skipped (from the worker's log).

Run from a checkout (the workers import the checkout the script is in):
    PYTHONPATH=. .venv/bin/python benchmarks/bench_backlog.py --runs 1500
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
from tests.fleet import Worker, fleet_env, redis_server  # noqa: E402


def cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--lease", default="2")
    args = parser.parse_args()
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        env = fleet_env(url, BELUGA_LEASE_SECONDS=args.lease, BELUGA_EAGER_ACTIVITIES="0")
        worker = Worker(env, "bench", Path(tmp), concurrency=2).wait_ready()
        try:
            r = redis.Redis.from_url(url)
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
            time.sleep(1.0)
            cpu0, lrange0, t0 = cpu(r), r.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0), time.time()
            handles = [ex.execute("fleet_steps", workflow.WorkflowOptions(
                id=f"backlog-{i}-{uuid.uuid4().hex[:4]}", input={"steps": 1, "sleep": 0.02}))
                for i in range(args.runs)]
            peak = 0
            while not all(h.status() is workflow.WorkflowStatus.COMPLETED for h in handles[-20:]):
                peak = max(peak, int(r.llen("beluga.activity.fleet_step")))
                time.sleep(0.5)
            for h in handles:
                assert h.result(timeout=600) == 1
            wall = time.time() - t0
            lrange = r.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0) - lrange0
            spent = cpu(r) - cpu0
            log = worker.log()
            failed = sum(1 for h in handles for e in ex.describe(h.id).history if e.type == "activity_failed")
            print(f"runs {args.runs}, lease {args.lease}s: peak queue {peak} messages, wall {wall:.1f}s, "
                  f"Redis CPU {spent:.1f}s, LRANGE calls {lrange} (scripts' included), "
                  f"sent again {log.count('sending it again')}, copies skipped {log.count('skipping stale attempt')}, "
                  f"attempts failed (WorkerLost) {failed}")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
