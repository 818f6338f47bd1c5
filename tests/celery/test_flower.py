"""`celery -A beluga flower` serves the fleet's dashboard."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

from tests.fleet import ROOT, fleet_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flower_starts_and_serves_the_dashboard(fleet) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "beluga", "flower", f"--port={port}",
                             "--address=127.0.0.1"], env=fleet_env(fleet.url), cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/workers", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("flower did not start") from None
                time.sleep(0.3)
        assert resp.status == 200 and "Flower" in body
    finally:
        proc.terminate()
        proc.wait(15)
