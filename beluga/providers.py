"""Executors and stores by name: built-ins, `register()`ed factories, and the entry-point groups
`beluga.executors` and `beluga.stores` through which other packages add theirs."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from beluga.core.errors import ConfigurationError
from beluga.executors.aio import AsyncExecutor
from beluga.executors.base import Config, DurableExecutor
from beluga.stores.base import WorkflowStore

ExecutorFactory = Callable[[Config], DurableExecutor]

_BUILTIN_EXECUTORS = {
    "default": "beluga.inprocess.executor:factory",
    "celery": "beluga.celery.client:factory",
}
_BUILTIN_STORES = {
    "memory": "beluga.stores.memory:InMemoryStore",
    "sqlite": "beluga.stores.sqlite:SQLiteStore",
    "redis": "beluga.stores.redis:RedisStore",
}
_executors: dict[str, ExecutorFactory] = {}
_stores: dict[str, Callable[..., WorkflowStore]] = {}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    mod = __import__(module, fromlist=[attr])
    return getattr(mod, attr)


def _group(name: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=name)}


def register(name: str, factory: ExecutorFactory) -> None:
    """Make `new(name, config)` call `factory(config)`."""
    _executors[name] = factory


def list_providers() -> list[str]:
    return sorted(set(_BUILTIN_EXECUTORS) | set(_executors) | set(_group("beluga.executors")))


def _factory(name: str, registered: dict[str, Any], builtin: dict[str, str], group: str, what: str,
             known: Callable[[], list[str]]) -> Any:
    """Where a name is looked up: `register()`ed first, then the built-ins, then installed packages."""
    if name in registered:
        return registered[name]
    if name in builtin:
        return _load(builtin[name])
    eps = _group(group)
    if name in eps:
        return eps[name].load()
    raise ConfigurationError(f"unknown {what} {name!r}; known: {known()}")


def new(name: str, config: Config | None = None) -> DurableExecutor:
    """An executor from the provider registered as `name`."""
    factory = _factory(name, _executors, _BUILTIN_EXECUTORS, "beluga.executors", "executor provider", list_providers)
    return factory(config or Config())


# Providers whose calls are native asyncio (else `new_async` runs the blocking executor's calls on threads).
_BUILTIN_ASYNC = {"celery": "beluga.celery.aio:factory"}


def new_async(name: str, config: Config | None = None) -> AsyncExecutor:
    """The executor of provider `name`, awaitable (`AsyncExecutor`: `await executor.execute(...)`,
    `await handle.result()`, ...). The celery client makes every call on the event loop with redis-py's
    asyncio client; any other provider's blocking calls run on a thread of the loop (`asyncio.to_thread`)."""
    if name in _BUILTIN_ASYNC and name not in _executors:
        return _load(_BUILTIN_ASYNC[name])(config or Config())  # type: ignore[no-any-return]
    return AsyncExecutor(new(name, config))


def register_store(name: str, factory: Callable[..., WorkflowStore]) -> None:
    _stores[name] = factory


def list_stores() -> list[str]:
    return sorted(set(_BUILTIN_STORES) | set(_stores) | set(_group("beluga.stores")))


def new_store(name: str, **settings: Any) -> WorkflowStore:
    """A store from the provider registered as `name`, built with `settings`."""
    return _factory(name, _stores, _BUILTIN_STORES, "beluga.stores", "store", list_stores)(**settings)


def new_executor(store: WorkflowStore | None = None, hooks: Any = None, **settings: Any) -> DurableExecutor:
    """The default, in-process executor."""
    from beluga.inprocess.executor import InProcessExecutor

    return InProcessExecutor(store, hooks, **settings)
