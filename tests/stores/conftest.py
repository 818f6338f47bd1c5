"""One `store` fixture for the contract suite: each backend is one line of `STORES`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beluga.stores import InMemoryStore, SQLiteStore
from beluga.stores.base import WorkflowStore

STORES: dict[str, Callable[[Path], WorkflowStore]] = {
    "memory": lambda tmp: InMemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(str(tmp / "beluga.db")),
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkflowStore]:
    s = STORES[request.param](tmp_path)
    try:
        yield s
    finally:
        s.close()
