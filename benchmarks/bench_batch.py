"""What reset and resumable batches cost, on the in-process executor with a SQLite store (a temp dir).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_batch.py [--runs 300] [--steps 20] [--reps 3]

1. A batch's journal: `--runs` parked runs terminated by `beluga batch`'s loop (`run_batch`: two fsynced
   journal lines per run, a summary read and the terminate) against a plain loop of `executor.terminate`
   over the same number of fresh runs (the baseline, measured in the same run). Runs per second, medians.
2. Reset against retry after a bad deploy: a run of `--steps` activities (each sleeps 10 ms) fails at its
   last step; the step is fixed; time from the call to the new run's result for `reset(to="last-good")`
   (replays the steps that worked) against `beluga retry` (runs every step again). Medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from beluga import workflow  # noqa: E402
from benchmarks._machine import describe  # noqa: E402

BROKEN: set[int] = set()


@workflow.activity(name="bench_step")
def bench_step(n: int) -> int:
    time.sleep(0.01)
    if n in BROKEN:
        raise workflow.ApplicationError(f"step {n} is broken", non_retryable=True)
    return n


@workflow.defn(name="bench_steps")
def bench_steps(ctx: workflow.WorkflowContext, steps: int) -> int:
    return sum(ctx.execute_activity(bench_step, n) for n in range(1, steps + 1))


@workflow.defn(name="bench_parked")
def bench_parked(ctx: workflow.WorkflowContext, _: int) -> None:
    ctx.receive_signal("stop").receive()


def parked(ex: workflow.DurableExecutor, prefix: str, n: int) -> list[str]:
    ids = [ex.execute(bench_parked, workflow.WorkflowOptions(id=f"{prefix}-{i:05d}", input=0)).id for i in range(n)]
    ex.describe(ids[-1])
    return ids


def journal_cost(ex: workflow.DurableExecutor, tmp: Path, runs: int, rep: int) -> tuple[float, float]:
    from beluga.cli.batch import make_act
    from beluga.cli.batch_jobs import BatchSpec, Journal, Pacer, Selection, run_batch
    from beluga.cli.target import Target

    plain = parked(ex, f"plain{rep}", runs)
    began = time.perf_counter()
    for wid in plain:
        ex.terminate(wid, "bench")
    baseline = runs / (time.perf_counter() - began)
    target = Target.for_executor(ex)
    batch = parked(ex, f"batch{rep}", runs)
    journal = Journal(tmp / "batches", f"bench-{rep}")
    journal.create(BatchSpec("terminate", {}, Selection({"id_prefix": f"batch{rep}"}), "bench"),
                   [(w, ex.summary(w).run_id) for w in batch])
    act = make_act(target, "terminate", {"reason": "bench"}, journal.id, "bench")
    began = time.perf_counter()
    tally = run_batch(journal, act, Pacer(0), lambda t: None)
    assert tally.done == runs, tally
    return baseline, runs / (time.perf_counter() - began)


def reset_vs_retry(ex: workflow.DurableExecutor, steps: int, rep: int) -> tuple[float, float]:
    from beluga.cli.runs import retry_run
    from beluga.cli.target import Target

    out = []
    for how in ("retry", "reset"):
        wid = f"{how}-{rep}"
        BROKEN.add(steps)
        try:
            ex.execute(bench_steps, workflow.WorkflowOptions(id=wid, input=steps)).result(timeout=120)
        except workflow.WorkflowFailed:
            pass
        BROKEN.discard(steps)
        began = time.perf_counter()
        if how == "retry":
            retry_run(Target.for_executor(ex), wid, "bench")
        else:
            ex.reset(wid, "last-good", identity="bench")
        assert ex.get_handle(wid).result(timeout=120) == steps * (steps + 1) // 2
        out.append(time.perf_counter() - began)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        store = workflow.new_store("sqlite", path=str(tmp / "bench.db"))
        ex = workflow.new_executor(store)
        try:
            costs = [journal_cost(ex, tmp, args.runs, rep) for rep in range(args.reps)]
            times = [reset_vs_retry(ex, args.steps, rep) for rep in range(args.reps)]
        finally:
            ex.close()
    base, batch = statistics.median(c[0] for c in costs), statistics.median(c[1] for c in costs)
    print(f"terminate {args.runs} runs: plain loop {base:.0f} runs/s, batch with its journal {batch:.0f} runs/s "
          f"(ratio {batch / base:.2f})")
    retry, reset = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
    print(f"{args.steps} steps failed at the last: retry to result {retry * 1000:.0f} ms, reset to last-good "
          f"{reset * 1000:.0f} ms (ratio {reset / retry:.2f})")


if __name__ == "__main__":
    main()
