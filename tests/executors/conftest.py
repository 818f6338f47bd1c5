"""The executor contract suite runs once per backend in `BACKENDS`; adding a provider (e.g. "celery")
is one more entry there. Tests reach executors only through `workflow.new(...)` and the public API.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.stores import InMemoryStore, SQLiteStore
from tests.executors import workflows  # noqa: F401  (registers the workflows the suite runs)


@dataclass
class Backend:
    """One provider on one store. `executor()` gives a new executor (a new client, or another process
    in spirit) over the same stored runs; all are closed when the test ends."""

    name: str
    provider: str
    store: Callable[[], workflow.WorkflowStore]
    executors: list[workflow.DurableExecutor] = field(default_factory=list)
    fleet: Any = None
    temporal: Any = None          # the session's Temporal server, for the "temporal" backend
    task_queue: str = ""          # one per test: runs a test leaves open stay on it, away from later tests
    stores: list[workflow.WorkflowStore] = field(default_factory=list)

    def executor(self, hooks: workflow.Hooks | None = None, **extra: Any) -> workflow.DurableExecutor:
        if self.provider == "celery":  # a client of the session's fleet; runs live in its Redis
            assert hooks is None, "the celery client takes no hooks: they fire in the workers"
            ex = self.fleet.executor(**extra)
            self.executors.append(ex)
            return ex
        if self.provider == "temporal":  # a client with a worker in this process; runs live in Temporal
            ex = workflow.new("temporal", workflow.Config(hooks=hooks, extra={
                "target": self.temporal.target, "task_queue": self.task_queue, "worker": True, **extra}))
            self.executors.append(ex)
            return ex
        store = self.store()
        self.stores.append(store)
        ex = workflow.new(self.provider, workflow.Config(store=store, hooks=hooks, extra=extra))
        self.executors.append(ex)
        return ex

    def close(self) -> None:
        for ex in reversed(self.executors):
            ex.close()
        for store in self.stores:
            store.close()


def _memory(tmp: Path) -> Callable[[], workflow.WorkflowStore]:
    shared = InMemoryStore()
    return lambda: shared


def _sqlite(tmp: Path) -> Callable[[], workflow.WorkflowStore]:
    path = tmp / "beluga.db"
    return lambda: SQLiteStore(path)  # a connection of its own, like another process would have


BACKENDS: dict[str, tuple[str, Callable[[Path], Callable[[], workflow.WorkflowStore]]]] = {
    "default-memory": ("default", _memory),
    "default-sqlite": ("default", _sqlite),
    "celery": ("celery", _memory),
    "celery-cluster": ("celery", _memory),   # the same fleet with its histories on a Redis Cluster
    "temporal": ("temporal", _memory),       # a real Temporal dev server; the store is unused
}
FLEETS = {"celery": "fleet", "celery-cluster": "cluster_fleet"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `in_process` state what only the in-process executor promises (hooks in the calling
    process, an in-memory human manager, unregistered activities failing at once, where the fleet
    instead waits for a worker that has the code): they do not run against the fleet's client."""
    selected, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("executor_factory") if params else None
        fleet_only = backend in FLEETS and item.get_closest_marker("in_process")
        (dropped if fleet_only or _not_on_temporal(item, backend) else selected).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = selected


def _not_on_temporal(item: pytest.Item, backend: str | None) -> bool:
    """Tests marked `not_temporal(reason)` state what Temporal does differently; the reason, required, is
    the documentation of the difference (docs/temporal.md lists them)."""
    marker = item.get_closest_marker("not_temporal")
    if marker is None or backend != "temporal":
        return False
    assert marker.args and isinstance(marker.args[0], str), f"{item.nodeid}: not_temporal needs a reason"
    return True


@pytest.fixture(params=list(BACKENDS))
def executor_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    provider, store = BACKENDS[request.param]
    backend = Backend(request.param, provider, store(tmp_path))
    if provider == "temporal":
        backend.temporal = request.getfixturevalue("temporal_server")
        backend.task_queue = f"beluga-test-{uuid.uuid4().hex[:12]}"
    if provider == "celery":
        backend.fleet = request.getfixturevalue(FLEETS[request.param])
        workflows.SHARED_URL = backend.fleet.url  # activities record their calls in the fleet's broker Redis
    try:
        yield backend
    finally:
        workflows.SHARED_URL = None
        backend.close()


@pytest.fixture
def executor(executor_factory: Backend) -> workflow.DurableExecutor:
    return executor_factory.executor()


@pytest.fixture
def new_id(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Unique workflow ids, readable in failure output."""
    prefix = request.node.name.replace("[", "-").rstrip("]")[:60]
    return lambda: f"{prefix}-{uuid.uuid4().hex[:8]}"
