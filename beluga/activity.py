"""What an activity knows about itself while it runs: `activity_info()` and `heartbeat()`.

Executors set the context around each attempt; the activity function stays a plain function (or an
`async def` one, awaited on an event loop: the context is then the attempt's asyncio task's own)."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from beluga.core.errors import WorkflowError


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    workflow_id: str
    run_id: str
    activity_name: str
    seq: int
    attempt: int
    heartbeat_details: Any = None
    _beat: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and re-runs after a crash: use it to make side effects happen once."""
        return f"{self.workflow_id}:{self.run_id}:{self.seq}"


_current: contextvars.ContextVar[ActivityInfo | None] = contextvars.ContextVar("beluga_activity",
                                                                                  default=None)


def activity_info() -> ActivityInfo:
    info = _current.get()
    if info is None:
        raise WorkflowError("activity_info() is only available inside a running activity")
    return info


def heartbeat(details: Any = None) -> None:
    """Tell the engine the activity is alive; `details` reach the next attempt as `heartbeat_details`."""
    info = _current.get()
    if info is None:
        raise WorkflowError("heartbeat() is only available inside a running activity")
    if info._beat is not None:
        info._beat(details)


def run_with_info(info: ActivityInfo, fn: Callable[[], Any]) -> Any:
    token = _current.set(info)
    try:
        return fn()
    finally:
        _current.reset(token)


async def run_async_with_info(info: ActivityInfo, call: Callable[[], Awaitable[Any]]) -> Any:
    """Await an `async def` activity with `info` as its context: each asyncio task has a copy of the context
    of its own, so the many attempts on one loop see each their own `activity_info()`."""
    token = _current.set(info)
    try:
        return await call()
    finally:
        _current.reset(token)
