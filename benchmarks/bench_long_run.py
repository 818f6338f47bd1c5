"""Per-step cost over a long history: does step 2000 cost what step 1 costs?

    .venv/bin/pip install -e ".[bench]"   # once, in a checkout
    PYTHONPATH=. .venv/bin/python benchmarks/bench_long_run.py [--reps 5] [--steps 2000]

One workflow runs N sequential trivial activities (default 2000; each returns x + 1) on the
in-process executor with a SQLiteStore on a fresh temp file per repetition (journal_mode=WAL,
synchronous=NORMAL, as shipped). A step's time is the gap between consecutive `activity_completed`
events of the durable history (their timestamps are taken by the engine when it records them; the
first step is measured from `workflow_started`). Reported per run and as medians over the runs:
  first  - mean step time over steps 1..100
  last   - mean step time over the last 100 steps
  ratio  - last / first (goal <= 1.5: no per-step cost that grows with the history)
  wall   - execute() to result() in hand, for the whole workflow
As a cross-check the activity also notes time.perf_counter() when it runs; the gaps between
consecutive activity invocations give the same first/last figures from an independent clock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from beluga import workflow  # noqa: E402
from beluga.stores import SQLiteStore  # noqa: E402
from benchmarks._machine import describe  # noqa: E402

_CALLS: list[float] = []
WINDOW = 100


@workflow.activity(name="bench_long_inc")
def inc(x: int) -> int:
    _CALLS.append(time.perf_counter())
    return x + 1


@workflow.defn(name="bench_long_loop")
def loop(ctx: workflow.WorkflowContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = ctx.execute_activity(inc, x)
    return x


def window_means(starts: list[float], ends: list[float]) -> tuple[float, float]:
    gaps = [b - a for a, b in zip(starts, ends, strict=True)]
    return statistics.fmean(gaps[:WINDOW]), statistics.fmean(gaps[-WINDOW:])


def one_run(steps: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-long-")
    store = SQLiteStore(os.path.join(tmp, "long.sqlite"))
    ex = workflow.new("default", workflow.Config(store=store))
    _CALLS.clear()
    try:
        t0 = time.perf_counter()
        h = ex.execute(loop, workflow.WorkflowOptions(input=steps))
        result = h.result(timeout=3600)
        wall = time.perf_counter() - t0
        history = ex.describe(h.id).history
        conn = store._conn()
        mode = (conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        ex.close()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if result != steps:
        raise SystemExit(f"wrong result {result!r}")
    done = [e.timestamp for e in history if e.type == "activity_completed"]
    if len(done) != steps:
        raise SystemExit(f"{len(done)} activity_completed events for {steps} steps")
    started = next(e.timestamp for e in history if e.type == "workflow_started")
    first, last = window_means([started, *done[:-1]], done)
    calls = list(_CALLS)  # cross-check: gaps between activity invocations (steps 2..N)
    c_first, c_last = window_means(calls[:-1], calls[1:])
    return {"wall": wall, "first": first, "last": last, "ratio": last / first, "events": len(history),
            "x_first": c_first, "x_last": c_last, "x_ratio": c_last / c_first, "mode": mode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    if args.steps < 2 * WINDOW:
        raise SystemExit(f"--steps must be at least {2 * WINDOW}")
    print(f"bench_long_run: 1 workflow x {args.steps} sequential activities, in-process executor + "
          f"SQLiteStore (fresh temp file per run), {args.reps} runs")
    print("machine:", describe(f"sqlite {sqlite3.sqlite_version}", f"temp dir {tempfile.gettempdir()}"))
    runs = []
    print()
    print(f"{'run':<6}{'first100 us/step':>18}{'last100 us/step':>17}{'last/first':>12}{'wall s':>9}"
          f"{'events':>8}   cross-check (activity clock) first/last/ratio")
    for i in range(args.reps):
        r = one_run(args.steps)
        runs.append(r)
        print(f"{i + 1:<6}{r['first'] * 1e6:>18.1f}{r['last'] * 1e6:>17.1f}{r['ratio']:>12.3f}{r['wall']:>9.3f}"
              f"{r['events']:>8}   {r['x_first'] * 1e6:.1f} / {r['x_last'] * 1e6:.1f} / {r['x_ratio']:.3f}",
              flush=True)

    def med(k: str) -> float:
        return statistics.median(r[k] for r in runs)

    print(f"{'median':<6}{med('first') * 1e6:>18.1f}{med('last') * 1e6:>17.1f}{med('ratio'):>12.3f}"
          f"{med('wall'):>9.3f}{'':>8}   {med('x_first') * 1e6:.1f} / {med('x_last') * 1e6:.1f} / "
          f"{med('x_ratio'):.3f}")
    print()
    print(f"durability mode: journal_mode={runs[0]['mode'][0]}, synchronous={runs[0]['mode'][1]} "
          "(1=NORMAL)")
    print(f"median total wall time: {med('wall'):.3f} s for {args.steps} steps "
          f"({args.steps / med('wall'):.0f} steps/s)")
    ratio = med("ratio")
    print(f"median last100/first100 ratio = {ratio:.3f}  goal <= 1.5: {'MET' if ratio <= 1.5 else 'MISSED'}")
    print("machine after:", f"load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
