"""One `store` fixture for the contract suite: each backend is one line of `STORES` (the Redis server is
tests/conftest.py's `redis_url`)."""

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


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkflowStore]:
    if request.param == "redis":
        _REDIS["url"] = request.getfixturevalue("redis_url")
    s = STORES[request.param](tmp_path)
    try:
        yield s
    finally:
        s.close()
