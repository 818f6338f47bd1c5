"""The fleet smoke from an installed wheel, outside the source tree: `python -m beluga.dev --flower`
(embedded valkey, a worker running the demo's order workflow, Flower), then the celery client of the
installed package starts an order by name, approves it with a signal and reads its result, and the fleet
stops cleanly. scripts/check_wheel.sh runs it with the wheel's fresh virtual environment."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    import beluga
    from beluga import workflow

    assert "site-packages" in beluga.__file__, f"beluga imported from {beluga.__file__}, not from the wheel"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}    # so it embeds valkey
    log = Path(tempfile.mkstemp(prefix="beluga-wheel-", suffix=".log")[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        flower = str(s.getsockname()[1])
    with open(log, "w") as out:
        dev = subprocess.Popen([sys.executable, "-m", "beluga.dev", "--flower", "--flower-port", flower,
                                "--concurrency", "1", "--grace", "8"],
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "the fleet is up" not in log.read_text():
            if dev.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fleet did not come up")
            time.sleep(0.2)
        url = re.search(r"redis\s+(redis://\S+)", log.read_text()).group(1)
        print(f"smoke_wheel: the fleet is up ({url})", flush=True)
        executor = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
        handle = executor.execute("order_workflow", workflow.WorkflowOptions(input="WHEEL-1"))
        deadline = time.monotonic() + 30
        while executor.query(handle.id, "progress") != "awaiting approval":
            if time.monotonic() > deadline:
                raise RuntimeError("the order never awaited approval")
            time.sleep(0.2)
        executor.signal(handle.id, workflow.Signal("approve", "approved"))
        result = handle.result(timeout=30)
        assert result == "order WHEEL-1 processed", result
        print(f"smoke_wheel: order {handle.id} completed: {result}", flush=True)
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(30) == 0, f"beluga.dev exited with {dev.returncode}"
        text = log.read_text()
        assert "beluga.dev: stopped" in text and "Traceback" not in text, text[-3000:]
        print("smoke_wheel: stopped cleanly", flush=True)
        return 0
    except Exception as exc:  # noqa: BLE001 - report, with the fleet's output, and fail
        print(f"smoke_wheel: FAILED: {exc!r}\n--- beluga.dev output ---\n{log.read_text()[-6000:]}", file=sys.stderr)
        return 1
    finally:
        if dev.poll() is None:
            try:
                os.killpg(dev.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            dev.wait(10)
        log.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
