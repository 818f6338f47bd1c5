"""The fleet smoke from an installed wheel, outside the source tree: `python -m beluga.dev --flower`
(embedded valkey, a worker running the demo's order workflow, Flower), then the celery client of the
installed package starts an order by name, approves it with a signal and reads its result, and the fleet
stops cleanly. scripts/check_wheel.sh runs it with the wheel's fresh virtual environment."""

from __future__ import annotations

import re
import sys

from smoke_dev import DevFleet, free_port  # this script's folder is first on sys.path


def main() -> int:
    import beluga
    from beluga import workflow

    assert "site-packages" in beluga.__file__, f"beluga imported from {beluga.__file__}, not from the wheel"
    with DevFleet("--flower", "--flower-port", str(free_port()), "--concurrency", "1", "--grace", "8") as dev:
        try:
            dev.up()
            url = re.search(r"redis\s+(redis://\S+)", dev.output()).group(1)
            print(f"smoke_wheel: the fleet is up ({url})", flush=True)
            executor = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
            handle = executor.execute("order_workflow", workflow.WorkflowOptions(input="WHEEL-1"))
            dev.until("the order to await approval",
                      lambda: executor.query(handle.id, "progress") == "awaiting approval", 30)
            executor.signal(handle.id, workflow.Signal("approve", "approved"))
            result = handle.result(timeout=30)
            assert result == "order WHEEL-1 processed", result
            print(f"smoke_wheel: order {handle.id} completed: {result}", flush=True)
            dev.stop_cleanly()
            print("smoke_wheel: stopped cleanly", flush=True)
            return 0
        except Exception as exc:  # noqa: BLE001 - report, with the fleet's output, and fail
            print(f"smoke_wheel: FAILED: {exc!r}\n--- beluga.dev output ---\n{dev.output()[-6000:]}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
