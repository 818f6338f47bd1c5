"""Where runs and their histories live: one module per backend, all held to `WorkflowStore`'s contract."""

from __future__ import annotations

from typing import Any

from beluga.stores.base import WorkflowStore
from beluga.stores.memory import InMemoryStore
from beluga.stores.sqlite import SQLiteStore

__all__ = ["WorkflowStore", "InMemoryStore", "SQLiteStore"]  # RedisStore: on demand, below


def __getattr__(name: str) -> Any:
    # Imported on demand, so using the other stores never requires the redis client.
    if name == "RedisStore":
        from beluga.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
