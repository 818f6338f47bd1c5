"""One `store` fixture for the contract suite: each backend is one line of `STORES`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beluga.stores import InMemoryStore, RedisStore, SQLiteStore
from beluga.stores.base import WorkflowStore

STORES: dict[str, Callable[[Path], WorkflowStore]] = {
    "memory": lambda tmp: InMemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(str(tmp / "beluga.db")),
    "redis": lambda tmp: RedisStore(_REDIS["url"], prefix=f"t{uuid.uuid4().hex[:8]}"),
}
_REDIS: dict[str, str] = {}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis-compatible server for the whole session (each test gets its own key prefix)."""
    from tests.fleet import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkflowStore]:
    if request.param == "redis":
        _REDIS["url"] = request.getfixturevalue("redis_url")
    s = STORES[request.param](tmp_path)
    try:
        yield s
    finally:
        s.close()
