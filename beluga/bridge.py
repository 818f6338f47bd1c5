"""Running the fleet client's synchronous code on asyncio, every Redis call made with redis-py's asyncio
client: the async client (`workflow.new_async("celery")`, beluga/celery/aio.py) is the same code as the
blocking one, not a copy of it.

How: `run_bridged(fn, ...)` runs `fn` in a greenlet of its own on the event loop's thread. The Redis
client that code holds is a `Bridged` wrapper of a `redis.asyncio` client: each command returns a
coroutine, which `await_only` hands to `run_bridged`; that awaits it on the loop (other tasks run
meanwhile) and switches back into the greenlet with the reply, or throws its error there. SQLAlchemy's
asyncio extension bridges its synchronous ORM to async drivers the same way. So the Lua scripts, the key
names, the retry budget and every error are those of the blocking client, by construction.

Two things the client does are not Redis commands: waiting between retries (`pause`: `asyncio.sleep` in a
bridge, `time.sleep` elsewhere) and publishing Celery tasks, which kombu does synchronously: `blocking(fn)`
runs `fn` on one hidden publisher thread (`beluga-publish`) while the loop carries on, and inline outside
a bridge (workers and the blocking client are unchanged). Publishing is a socket write of a few hundred
bytes, so one thread serves every executor of the process; a broker that does not answer holds only
that thread, for kombu's connect timeout, never the loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from greenlet import getcurrent, greenlet

T = TypeVar("T")


class _Bridge(greenlet):  # type: ignore[misc]
    """The greenlet a bridged call runs in; `driver` is the coroutine's greenlet awaiting on its behalf."""

    def __init__(self, fn: Callable[..., Any], driver: greenlet) -> None:
        super().__init__(fn, driver)
        self.driver = driver
        self.gr_context = driver.gr_context  # the caller's context variables (log fields, trace context)


def in_bridge() -> bool:
    """Whether this code runs inside `run_bridged` (and may `await_only`)."""
    return isinstance(getcurrent(), _Bridge)


def await_only(awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, awaited on the event loop by the `run_bridged` that runs this code."""
    current = getcurrent()
    if not isinstance(current, _Bridge):
        raise RuntimeError("an asyncio Redis client was used outside beluga.bridge.run_bridged")
    return current.driver.switch(awaitable)  # type: ignore[no-any-return]


async def run_bridged(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, its `await_only` calls awaited here."""
    bridge = _Bridge(fn, getcurrent())
    step = bridge.switch(*args, **kwargs)
    while not bridge.dead:
        try:
            value = await step
        except BaseException:  # handed to the code that awaited it, which may catch it
            step = bridge.throw(*sys.exc_info())
        else:
            step = bridge.switch(value)
    return step  # type: ignore[no-any-return]


def pause(seconds: float) -> None:
    """Wait `seconds` between two tries: without holding the event loop in a bridge."""
    if in_bridge():
        await_only(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


_publisher: ThreadPoolExecutor | None = None
_publisher_lock = threading.Lock()


def blocking(fn: Callable[[], T]) -> T:
    """`fn()`, a call that blocks on a socket (kombu's publish): in a bridge, on the publisher thread
    while the loop carries on; elsewhere right here."""
    if not in_bridge():
        return fn()
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beluga-publish")
    return await_only(asyncio.get_running_loop().run_in_executor(_publisher, fn))


_CLOSING = ("close", "reset")


class Bridged:
    """A `redis.asyncio` client (or one of its pipelines, scripts, pub/subs, connections) used as a
    blocking one, inside `run_bridged`: a call that returns a coroutine is awaited by `await_only`; what
    comes back that is redis-py's own object is wrapped in turn. `with` enters it as `async with`."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name in _CLOSING and hasattr(self._target, "aclose"):
            name = "aclose"  # what redis-py's asyncio objects call the blocking ones' close and reset
        value = getattr(self._target, name)
        if not callable(value):
            return _wrap(value)

        def call(*args: Any, **kwargs: Any) -> Any:
            got = value(*args, **_unwrapped(kwargs))
            if asyncio.iscoroutine(got) or isinstance(got, asyncio.Future):
                got = await_only(got)
            return _wrap(got)

        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a registered script
        got = self._target(*args, **_unwrapped(kwargs))
        return _wrap(await_only(got) if asyncio.iscoroutine(got) else got)

    def __enter__(self) -> Any:
        return _wrap(await_only(self._target.__aenter__()))

    def __exit__(self, *exc: Any) -> None:
        await_only(self._target.__aexit__(*exc))

    def __repr__(self) -> str:
        return f"Bridged({self._target!r})"


def _wrap(value: Any) -> Any:
    """redis-py's own objects wrapped; replies (and the errors a pipeline returns in place) as they are."""
    module = type(value).__module__
    if isinstance(value, BaseException) or not (module == "redis" or module.startswith("redis.")):
        return value
    return Bridged(value)


def _unwrapped(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A script called with `client=` a bridged pipeline gets the pipeline itself."""
    client = kwargs.get("client")
    return {**kwargs, "client": client._target} if isinstance(client, Bridged) else kwargs
