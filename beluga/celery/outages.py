"""Living through Redis and broker outages: which errors are transient, bounded retries with backoff, and
logging that stays quiet while an outage lasts (one line when it starts, then at most one every ten
seconds with a count of what was held back, and one when it ends)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from kombu.exceptions import OperationalError

T = TypeVar("T")

# What an unreachable, restarting, loading, frozen or full Redis or broker raises (redis-py's
# BusyLoadingError, the append-only file still loading, is a ConnectionError; OutOfMemoryError is the
# error reply of a Redis at `maxmemory` with `noeviction`, which refuses writes until memory is freed:
# an outage of writes, waited out like any other).
TRANSIENT: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OperationalError,
                                             ConnectionError, TimeoutError, redis.exceptions.OutOfMemoryError)


def may_have_taken_effect(exc: BaseException) -> bool:
    """Whether a call to Redis that failed with `exc` may have taken effect: not when the connection was
    refused (nothing was sent), nor when Redis refused the command for lack of memory (Redis refuses a
    script before its first write, and a refused one writes nothing); any other failure (a timeout, a
    connection lost mid-reply) may have reached Redis. (A refusal is told by its cause, the OS's error: the
    asyncio client's message says "Connect call failed" where the blocking one's says "Connection refused".)"""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return False
    return not (isinstance(exc, redis.ConnectionError) and (isinstance(exc.__cause__, ConnectionRefusedError)
                                                            or "Connection refused" in str(exc)))


class _Budget:
    """The lines a process may log about errors that repeat: one per `interval`, for all topics."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = -1e9


_budget = _Budget()


class Quiet:
    """Logs the errors of one topic (sending tasks, reporting attempts, the scheduler, ...) while an
    outage lasts: the topic's first error at once (with its traceback if it is not a known transient
    one), then at most one line every `interval` seconds for all topics of the process together, each
    saying how many errors were held back since; `recovered()` logs one line when the topic works again."""

    def __init__(self, logger: logging.Logger, topic: str, interval: float = 10.0) -> None:
        self.logger = logger
        self.topic = topic
        self.interval = interval
        self._held = 0
        self._failing = False

    def error(self, message: str, *args: Any, exc: BaseException | None = None) -> None:
        now = time.monotonic()
        with _budget.lock:
            first = not self._failing
            self._failing = True
            if not first and now - _budget.last < self.interval:
                self._held += 1
                return
            _budget.last = now
            held, self._held = self._held, 0
        suffix = f" ({held} similar since)" if held else ""
        if exc is not None and not isinstance(exc, TRANSIENT):
            self.logger.error(message + suffix, *args, exc_info=exc)
        elif exc is not None:
            self.logger.warning(message + ": %s" + suffix, *args, _describe(exc))
        else:
            self.logger.warning(message + suffix, *args)

    def recovered(self) -> None:
        if not self._failing:  # the common case, without the lock
            return
        with _budget.lock:
            if not self._failing:
                return
            self._failing = False
            held, self._held = self._held, 0
        self.logger.warning("%s works again%s", self.topic, f" ({held} more errors held back)" if held else "")

    @property
    def failing(self) -> bool:
        return self._failing


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def retry_transient(fn: Callable[[], T], budget: float, *, first: float = 0.05, cap: float = 1.0,
                    on_error: Callable[[BaseException], None] | None = None) -> T:
    """Call `fn` until it returns, retrying transient errors with exponential backoff for up to `budget`
    seconds; the last error is raised once the budget is spent, any other error at once."""
    deadline = time.monotonic() + budget
    delay = first
    while True:
        try:
            return fn()
        except TRANSIENT as exc:
            if on_error is not None:
                on_error(exc)
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(delay, left))
            delay = min(cap, delay * 2)
