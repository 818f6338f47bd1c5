"""A store that closes its client after every write and opens a new one before the next call, so each
read is answered by a client that rebuilt its state from the server (for stores that keep a view in
memory, such as Kafka's: the contract suite then shows the view is never the only copy)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from beluga.stores.base import WorkflowStore

_WRITES = frozenset({"save", "delete", "create", "append"})


class RestartingStore(WorkflowStore):
    def __init__(self, factory: Callable[[], WorkflowStore]) -> None:
        self._factory = factory
        self._client = factory()
        self._lock = threading.Lock()
        self._inflight = 0
        self._dirty = False
        self.restarts = 0

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._dirty and self._inflight == 0:  # one client at a time: restart between calls
                self._client.close()
                self._client = self._factory()
                self.restarts += 1
                self._dirty = False
            client = self._client
            self._inflight += 1
        try:
            return getattr(client, name)(*args, **kwargs)
        finally:
            with self._lock:
                self._inflight -= 1
                self._dirty = self._dirty or name in _WRITES

    def save(self, state: Any) -> None:
        self._call("save", state)

    def load(self, workflow_id: str) -> Any:
        return self._call("load", workflow_id)

    def load_summary(self, workflow_id: str) -> Any:
        return self._call("load_summary", workflow_id)

    def list(self, filter: Any = None) -> Any:
        return self._call("list", filter)

    def delete(self, workflow_id: str) -> None:
        self._call("delete", workflow_id)

    def create(self, state: Any, *, replace_run_id: str | None = None) -> None:
        self._call("create", state, replace_run_id=replace_run_id)

    def append(self, appends: Any) -> Any:
        return self._call("append", appends)

    def history(self, workflow_id: str, after: int = 0) -> Any:
        return self._call("history", workflow_id, after)

    def close(self) -> None:
        self._client.close()
