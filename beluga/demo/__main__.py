"""The main job: the order workflow end to end on the in-process executor with the SQLite store.

    python -m beluga.demo [--db beluga-demo.db]

It starts an order, shows that it parks waiting for approval (no thread held), approves it with a
signal, waits for the result and prints the run's event history."""

from __future__ import annotations

import argparse
import time
import uuid

from beluga import workflow
from beluga.demo.orders import order_workflow
from beluga.stores import SQLiteStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="beluga-demo.db", help="SQLite file holding the runs")
    parser.add_argument("--order", default="ORD-456")
    args = parser.parse_args()

    executor = workflow.new("default", workflow.Config(store=SQLiteStore(args.db)))
    try:
        workflow_id = f"order-{args.order}-{uuid.uuid4().hex[:8]}"
        handle = executor.execute(order_workflow, workflow.WorkflowOptions(
            id=workflow_id, input=args.order, timeout=1800))
        print(f"started {handle.id} (run {handle.run_id})")
        while _progress(executor, handle.id) != "awaiting approval":
            time.sleep(0.05)
        print(f"status: {handle.status().value}, progress: {executor.query(handle.id, 'progress')!r}")
        executor.signal(handle.id, workflow.Signal(name="approve", payload="approved"))
        print("sent signal 'approve'")
        print(f"result: {handle.result(timeout=60)!r}")
        print(f"status: {handle.status().value}\nhistory:")
        for event in executor.describe(handle.id).history:
            attrs = {k: v for k, v in event.attrs.items() if k not in ("seed", "retry")}
            print(f"  #{event.id:<2} {event.type:<20} {attrs}")
    finally:
        executor.close()


def _progress(executor: workflow.DurableExecutor, workflow_id: str) -> str | None:
    try:
        return executor.query(workflow_id, "progress")
    except workflow.QueryNotFound:  # the workflow has not reached its handler yet
        return None


if __name__ == "__main__":
    main()
