"""`workflow.new_async("celery")`: the celery client, awaitable, on redis-py's asyncio client.

It is the blocking client (`CeleryExecutor`, client.py) run through beluga/bridge.py: the same Lua
scripts (loaded with the asyncio client), the same key names, the same retry budget and errors, every
Redis command awaited on the event loop, `handle.result()` waiting on the run's close announcement with
an asyncio pub/sub. Two differences:

- Celery tasks (a shard's wake task, a run's coordinate task, a query) are published by kombu, which is
  synchronous: on one hidden publisher thread (`beluga-publish`), awaited by the call that sends them.
  A signal or a start wakes its run exactly as the blocking client does: the run joins its shard's wake
  set in Redis (asyncio) and a wake task is published only when none is on its way.
- A run whose workflow code this process has is not started eagerly here (the blocking client may take
  its first step in the calling process): replaying workflow code would hold the event loop, so a worker
  takes the first step.

An executor belongs to one event loop (its connections are made in the loop that first uses them): make
it in that loop (FastAPI's lifespan) or before it starts, and `await executor.aclose()` at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beluga.bridge import Bridged, run_bridged
from beluga.celery.client import CeleryExecutor, client_settings
from beluga.celery.process import FleetProcess
from beluga.executors.aio import AsyncExecutor
from beluga.executors.base import Config
from beluga.stores.redis import connect_async


def bridged_connect(url: str, socket_timeout: float, connect_timeout: float) -> Bridged:
    """A Redis client for the fleet's blocking code that makes every call on redis-py's asyncio client."""
    return Bridged(connect_async(url, socket_timeout, connect_timeout))


class _Checked:
    """Runs each call in a bridge, the first after the check the blocking client makes as it is built
    (a history Redis that may evict keys is refused, see `check_history_redis`)."""

    def __init__(self, client: CeleryExecutor) -> None:
        self.client = client
        self.checked = False

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.checked:
            await run_bridged(self.client.check_redis)
            self.checked = True
        return await run_bridged(fn, *args, **kwargs)


def factory(config: Config | None = None) -> AsyncExecutor:
    """The async celery client for `config` (as `workflow.new("celery", config)` reads it)."""
    from beluga.celery.app import get_app

    settings, query_timeout = client_settings(config)
    parts = FleetProcess(get_app(settings), settings, connect=bridged_connect)  # its own: this loop's
    client = CeleryExecutor(settings, query_timeout=query_timeout, parts=parts)
    client.eager_start = False  # workflow code is never replayed on the loop

    async def close_connections() -> None:
        await run_bridged(parts.store.close)

    return AsyncExecutor(client, run=_Checked(client), on_close=close_connections)
