"""Run the README's local fleet (`python -m beluga.dev --flower --web`) with this interpreter, put an
order through it over HTTP, and stop it. Standard library only: scripts/check_install.sh runs it with a
fresh virtual environment's Python, to prove that the README's install line is enough.

    python scripts/smoke_dev.py            # exit status 0 when the order completed and the fleet stopped cleanly
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                          "Accept": "application/json"},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class DevFleet:
    """`python -m beluga.dev ARGS` run by this interpreter with no BELUGA_* settings (so it embeds valkey),
    its output in a log file; a context that kills it and drops the log on the way out. Shared with
    scripts/smoke_wheel.py, which runs it from an installed wheel."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
        self.log = Path(tempfile.mkstemp(prefix="beluga-dev-", suffix=".log")[1])
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "beluga.dev", *args], cwd=cwd, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> DevFleet:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.log.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log.read_text()

    def until(self, what: str, check: Any, timeout: float) -> Any:
        """The first true value `check()` gives within `timeout` seconds (an OSError counts as none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"beluga.dev exited ({self.proc.returncode}) while waiting for {what}")
            try:
                value = check()
            except OSError:
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def up(self) -> None:
        self.until("the fleet", lambda: "the fleet is up" in self.output(), 60)

    def stop_cleanly(self) -> None:
        """SIGTERM, as Ctrl-C or a supervisor would: it must exit 0 with no traceback in its output."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        assert code == 0, f"beluga.dev exited with {code}"
        text = self.output()
        assert "beluga.dev: stopped" in text and "Traceback" not in text, text[-3000:]


def main() -> int:
    web, flower = free_port(), free_port()
    base = f"http://127.0.0.1:{web}"
    with DevFleet("--flower", "--web", "--web-port", str(web), "--flower-port", str(flower), "--concurrency", "1",
                  "--grace", "8", cwd=ROOT) as dev:
        try:
            dev.up()
            print("smoke: the fleet is up", flush=True)
            status, page = call(f"{base}/")
            assert status == 200 and b"<form" in page, (status, page[:200])
            status, body = call(f"{base}/orders", {"order_id": "SMOKE-1"})
            assert status == 201, (status, body)
            wid = body["workflow_id"]
            dev.until("the order to await approval",
                      lambda: call(f"{base}/orders/{wid}")[1]["progress"] == "awaiting approval", 30)
            assert call(f"{base}/orders/{wid}/approve", {"decision": "approved"})[0] == 202
            done = dev.until("the order to complete",
                             lambda: (b := call(f"{base}/orders/{wid}")[1])["status"] != "running" and b, 30)
            assert done["status"] == "completed" and done["result"] == "order SMOKE-1 processed", done
            print(f"smoke: order {wid} completed over HTTP: {done['result']}", flush=True)
            with urllib.request.urlopen(f"http://127.0.0.1:{flower}/", timeout=10) as resp:
                assert resp.status == 200
            print("smoke: flower answers", flush=True)
            dev.stop_cleanly()
            print("smoke: stopped cleanly", flush=True)
            return 0
        except Exception as exc:  # noqa: BLE001 - report, with the fleet's output, and fail
            print(f"smoke: FAILED: {exc}\n--- beluga.dev output ---\n{dev.output()[-6000:]}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
