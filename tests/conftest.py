"""Shared test setup: the repository root is importable, so test helpers are imported by their full
path (`tests.core.harness`, `tests.executors.workflows`), the same in pytest and in subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- real servers, started on first use and shared by the session -----------------------------------
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from beluga import workflow  # noqa: E402
from tests.fleet import Worker, fleet_env, redis_cluster, redis_server  # noqa: E402


class Fleet:
    """Workers and clients on one broker, `url`; histories in the same server unless `redis_url` names
    another (a Redis Cluster's `redis+cluster://` URL). Test activities note their calls in the broker's
    server (`BELUGA_TEST_CALLS_URL`), a plain Redis either way."""

    def __init__(self, url: str, log_dir: Path, redis_url: str | None = None) -> None:
        self.url = url
        self.redis_url = redis_url or url
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def start_worker(self, name: str, concurrency: int = 2, pool: str = "prefork", **env: str) -> Worker:
        env = {"BELUGA_TEST_CALLS_URL": self.url, **env}
        worker = Worker(fleet_env(self.url, self.redis_url, **env), name, self.log_dir, concurrency, pool=pool)
        self.workers.append(worker)
        return worker

    def executor(self, **extra: object) -> workflow.DurableExecutor:
        return workflow.new("celery", workflow.Config(extra={"broker_url": self.url, "redis_url": self.redis_url,
                                                              **extra}))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def dump_broker(self, name: str = "broker-dump.txt") -> Path:
        """Write what the broker holds and who is connected to it (its queues' messages by task id, the
        unacknowledged ones, CLIENT LIST) next to the workers' logs, for a test that failed waiting."""
        from tests.fleet import describe_broker

        path = self.log_dir / name
        path.write_text(describe_broker(self.url))
        return path


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with redis_server() as url:
        yield from _with_workers(Fleet(url, tmp_path_factory.mktemp("fleet")), "w1", "w2")


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private three-node Redis Cluster for the whole session: its `redis+cluster://` URL."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as url:
        yield url


@pytest.fixture(scope="session")
def cluster_fleet(tmp_path_factory: pytest.TempPathFactory, cluster_url: str) -> Iterator[Fleet]:
    """The session's fleet with its histories on the Redis Cluster; the broker a plain server."""
    with redis_server() as broker:
        yield from _with_workers(Fleet(broker, tmp_path_factory.mktemp("cluster-fleet"), redis_url=cluster_url),
                                "cw1", "cw2")


def _with_workers(f: Fleet, *names: str) -> Iterator[Fleet]:
    """A session fleet's body: its workers started and ready, stopped when the session ends."""
    try:
        for w in [f.start_worker(name) for name in names]:
            w.wait_ready()
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A bare private Redis-compatible server for the whole session (tests use their own key prefix)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def private_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A fleet of its own, for tests that kill workers."""
    with redis_server() as url:
        f = Fleet(url, tmp_path)
        try:
            yield f
        finally:
            f.stop()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real Temporal dev server for the session (`tests.servers.TemporalServer`); tests keep apart by
    task queue and workflow id."""
    from tests.servers import TemporalServer

    server = TemporalServer(tmp_path_factory.mktemp("temporal")).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers and servers a test left running are named (see tests/leaks.py) and killed."""
    from tests import leaks

    lines = leaks.reap()
    if lines:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "processes left running by tests (killed now):\n  " + "\n  ".join(lines)
        if reporter is not None:
            reporter.write_sep("=", "leaked processes")
            reporter.write_line(text)
        else:
            print(text)
