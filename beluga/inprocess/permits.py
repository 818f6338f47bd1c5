"""The activities' rate and concurrency permits of the in-process executor: `core.limits.take` on state
held in memory (one process runs every attempt, so memory is "every worker"), touched only by the
coordinator thread. A returned concurrency permit wakes the attempt that has waited longest for it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

from beluga.core.definitions import Registry
from beluga.core.limits import Granted, Holder, LimitState, Refused, start_gate, take


class MemoryPermits:
    def __init__(self, registry: Registry, wake: Callable[[Any], None]) -> None:
        self.registry = registry
        self._wake = wake                                               # posts a waiter's message now
        self._limits: defaultdict[str, LimitState] = defaultdict(LimitState)
        self._waiting: defaultdict[str, OrderedDict[str, Any]] = defaultdict(OrderedDict)  # key -> holder -> msg
        self._held: dict[str, str] = {}                                 # holder -> its limit's key
        self._starts: defaultdict[str, list[float]] = defaultdict(list)  # key -> recent starts (the gate's)
        self._starts_lock = threading.Lock()                            # the gate runs in the pool's threads

    def ask(self, name: str, input: Any, attempt: Holder, now: float) -> Granted | Refused | None:
        """`driver.PermitAsk`: a permit for `attempt` of activity `name`, or when to ask again."""
        limit = self.registry.limit_of(name)
        if limit is None:
            return None
        key, holder = limit.name_for(name, input), str(attempt)
        got = take(limit, self._limits[key], holder, now, float("inf"))  # returned at its end, never lapses
        if isinstance(got, Refused):
            return Refused(got.until, got.why, key)
        if limit.max_concurrent is not None:
            self._held[holder] = key
            self._waiting[key].pop(holder, None)  # woken or not, it waits no more
        return got

    def gate(self, name: str, input: Any) -> None:
        """Called by a pool thread right before a limited activity starts: wait until its rate allows the
        start (`core.limits.start_gate`)."""
        limit = self.registry.limit_of(name)
        if limit is None or not limit.per_second:
            return
        starts = self._starts[limit.name_for(name, input)]
        while True:
            with self._starts_lock:
                wait = start_gate(starts, time.time(), limit)
            if wait <= 0:
                return
            time.sleep(wait)

    def wait(self, key: str, holder: str, message: Any) -> None:
        """Attempt `holder` waits for a concurrency permit of `key`: woken by the next one returned."""
        self._waiting[key][holder] = message

    def give_back(self, holder: str) -> None:
        """Attempt `holder` ended: return its concurrency permit and wake the longest waiter."""
        key = self._held.pop(holder, None)
        if key is None:
            return
        self._limits[key].holders.pop(holder, None)
        waiting = self._waiting.get(key)
        if waiting:
            _, message = waiting.popitem(last=False)
            self._wake(message)
