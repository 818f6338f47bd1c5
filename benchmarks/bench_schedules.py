"""Schedules on the fleet through a worker's `kill -9` (issue 17): ticks fired against ticks expected.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_schedules.py                  # 100 schedules, 10 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_schedules.py --schedules 20 --minutes 2

Set-up: a private redis-server (append-only file on, as docs/production.md asks), two
`celery -A beluga worker -c 2` importing benchmarks.fleet_workload. N schedules, each an
`Interval(1)` from a common first tick for the given minutes, overlap ALLOW_ALL, catch-up window 60 s;
each tick's run (`bench_scheduled`) runs one activity that notes its run id under its workflow id and
the time it ran. A third of the way in, one worker is killed with `kill -9` (main process and pool) and
a new one started 5 s later.

Reported, from what the runs noted: ticks expected (schedules x seconds), ticks whose run ran (missed =
the difference), ticks that ran under more than one run id (duplicated), and lateness, from the tick to
its activity running (p50, p99, max), split before / around / after the kill. Goals: missed 0,
duplicated 0.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import redis  # noqa: E402

from beluga import workflow  # noqa: E402
from beluga.core.schedules import Interval, Overlap, SchedulePolicy, ScheduleSpec, run_id_for  # noqa: E402
from benchmarks import fleet_setup as fs  # noqa: E402
from tests.fleet import RedisProcess  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] if s else float("nan")


def start_worker(url: str, log_dir: Path, n: int) -> fs.CeleryWorker:
    return fs.CeleryWorker(url, log_dir, name=f"sched{n}", extra_env={"BELUGA_LEASE_SECONDS": "5"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedules", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    seconds = int(args.minutes * 60)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-schedules-"))
    print(f"bench_schedules: {args.schedules} schedules x 1 s for {seconds} s, two workers, one kill -9; "
          f"logs in {log_dir}")
    print("machine:", fs.machine())
    server = RedisProcess(log_dir, "redis").start()
    workers = [start_worker(server.url, log_dir, n) for n in (1, 2)]
    try:
        for w in workers:
            w.wait_ready()
        ex = workflow.new("celery", workflow.Config(extra={"broker_url": server.url, "redis_url": server.url}))
        key = f"b{os.getpid()}"
        first = math.ceil(time.time() + 10)
        ticks = [first + k for k in range(seconds)]
        ids = [f"{key}-{i:03d}" for i in range(args.schedules)]
        for sid in ids:
            ex.create_schedule(sid, "bench_scheduled", key, ScheduleSpec(
                intervals=(Interval(1),), start_at=first, end_at=ticks[-1]),
                policy=SchedulePolicy(Overlap.ALLOW_ALL, catchup_window=60))
        kill_at = first + seconds / 3
        time.sleep(max(0.0, kill_at - time.time()))
        workers[1].kill9()
        print(f"killed worker 2 (kill -9) at tick +{time.time() - first:.1f} s", flush=True)
        time.sleep(5.0)
        workers.append(start_worker(server.url, log_dir, 3))
        workers[-1].wait_ready()
        r = redis.Redis.from_url(server.url)
        want = {run_id_for(sid, t): t for sid in ids for t in ticks}
        deadline = ticks[-1] + 120
        while time.time() < deadline and r.hlen(f"bench:tick:{key}:at") < len(want):
            time.sleep(1.0)
        time.sleep(10.0)  # a late second start of any tick would show by now
        ran = {k.decode(): float(v) for k, v in r.hgetall(f"bench:tick:{key}:at").items()}
        twice = [wid for wid in want if r.scard(f"bench:tick:{key}:{wid}") > 1]
        late = {"before": [], "around": [], "after": []}
        for wid, at in ran.items():
            t = want.get(wid)
            if t is None:
                continue
            phase = "before" if t < kill_at else "around" if t < kill_at + 15 else "after"
            late[phase].append(at - t)
        missed = len(set(want) - set(ran))
        extra = len(set(ran) - set(want))
        every = [x for xs in late.values() for x in xs]
        print(f"\nticks expected {len(want)}, ran {len(want) - missed}, missed {missed}, duplicated {len(twice)}, "
              f"outside the spec {extra}")
        for phase, xs in [*late.items(), ("all", every)]:
            if xs:
                print(f"  lateness {phase:<6} ({len(xs):>6} ticks): p50 {statistics.median(xs) * 1e3:7.0f} ms  "
                      f"p99 {pct(xs, 99) * 1e3:7.0f} ms  max {max(xs) * 1e3:7.0f} ms")
        counts = [ex.describe_schedule(sid).schedule for sid in ids[:3]]
        print("  schedule records (first 3): " + "; ".join(f"started {s.started} missed {s.missed}" for s in counts))
        print(f"goals: missed 0 ({'MET' if missed == 0 else 'MISSED'}), duplicated 0 "
              f"({'MET' if not twice else 'MISSED'})")
        errors = [w.log() for w in workers]
        bad = [ln for text in errors for ln in text.splitlines() if "ERROR" in ln or "Traceback" in ln]
        if bad:
            print(f"worker errors ({len(bad)} lines), first: {bad[:3]}")
        ex.close()
    finally:
        for w in workers:
            w.stop()
        server.kill9()


if __name__ == "__main__":
    main()
