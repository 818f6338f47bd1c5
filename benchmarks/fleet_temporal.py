"""The Temporal side of bench_fleet.py: the same workflow (N sequential activities returning x + 1) with
the temporalio Python SDK, and the one worker process that runs it.

    python -m benchmarks.fleet_temporal --address 127.0.0.1:PORT --task-queue Q   (started by bench_fleet.py)

Worker settings, chosen to match one Celery worker with prefork concurrency 2:
  max_concurrent_activities=2, max_concurrent_workflow_tasks=2 (and 2 pollers of each kind),
  async activities (run on the worker's event loop, no thread pool), the SDK's default sandboxed
  workflow runner, default workflow cache (1000) and eager activity dispatch (the SDK default).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW = "BenchSteps"
CONCURRENCY = 2


@activity.defn(name="bench_inc")
async def bench_inc(x: int) -> int:
    return x + 1


@workflow.defn(name=WORKFLOW)
class BenchSteps:
    @workflow.run
    async def run(self, n: int) -> int:
        x = 0
        for _ in range(n):
            x = await workflow.execute_activity(bench_inc, x, start_to_close_timeout=timedelta(seconds=60))
        return x


async def connect(address: str, attempts: int = 300):  # noqa: ANN201
    from temporalio.client import Client

    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await Client.connect(address, namespace="default")
        except Exception as exc:  # the dev server is still starting
            last = exc
            await asyncio.sleep(0.1)
    raise RuntimeError(f"no Temporal server at {address}: {last}")


async def run_worker(address: str, task_queue: str, pollers: int | None) -> None:
    from temporalio.worker import Worker

    client = await connect(address)
    polls = {} if pollers is None else {"max_concurrent_workflow_task_polls": pollers,
                                        "max_concurrent_activity_task_polls": pollers}
    worker = Worker(client, task_queue=task_queue, workflows=[BenchSteps], activities=[bench_inc],
                    max_concurrent_activities=CONCURRENCY, max_concurrent_workflow_tasks=CONCURRENCY, **polls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print("TEMPORAL-WORKER-READY", flush=True)
        await stop.wait()


async def run_batch(client, task_queue: str, workflows: int, steps: int, tag: str) -> tuple[float, list[int]]:  # noqa: ANN001
    """Start `workflows` runs back to back, await every result; (wall seconds, results)."""
    import time

    t0 = time.perf_counter()
    handles = [await client.start_workflow(WORKFLOW, steps, id=f"{tag}-{i}", task_queue=task_queue)
               for i in range(workflows)]
    results = [await h.result() for h in handles]
    return time.perf_counter() - t0, results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--task-queue", required=True)
    ap.add_argument("--pollers", type=int, default=None, help="pollers of each kind (default: the SDK's)")
    args = ap.parse_args()
    asyncio.run(run_worker(args.address, args.task_queue, args.pollers))


if __name__ == "__main__":
    main()
