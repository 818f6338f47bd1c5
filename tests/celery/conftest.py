"""A fleet for the Celery tests: one private Redis server and two real `celery worker` processes for
the whole session (tests use unique workflow ids). Tests that kill workers start their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from beluga import workflow
from tests.fleet import Worker, fleet_env, redis_server


class Fleet:
    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def start_worker(self, name: str, concurrency: int = 2, **env: str) -> Worker:
        worker = Worker(fleet_env(self.url, **env), name, self.log_dir, concurrency)
        self.workers.append(worker)
        return worker

    def executor(self, **extra: object) -> workflow.DurableExecutor:
        return workflow.new("celery", workflow.Config(extra={"broker_url": self.url, "redis_url": self.url,
                                                              **extra}))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with redis_server() as url:
        f = Fleet(url, tmp_path_factory.mktemp("fleet"))
        workers = [f.start_worker("w1"), f.start_worker("w2")]
        for w in workers:
            w.wait_ready()
        try:
            yield f
        finally:
            f.stop()


@pytest.fixture
def private_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A fleet of its own, for tests that kill workers."""
    with redis_server() as url:
        f = Fleet(url, tmp_path)
        try:
            yield f
        finally:
            f.stop()
