"""The activities' rate and concurrency permits of the in-process executor: `core.limits.take` on state
held in memory (one process runs every attempt, so memory is "every worker"), touched only by the
coordinator thread. A returned concurrency permit wakes the attempt that has waited longest for it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from beluga.core.definitions import Registry
from beluga.core.limits import Holder, Refused, take

POLL = 5.0  # at most this long between asks of an attempt waiting for a concurrency permit (a lost wake-up)


class MemoryPermits:
    def __init__(self, registry: Registry, wake: Callable[[Any], None]) -> None:
        self.registry = registry
        self._wake = wake                                            # posts a waiter's message now
        self._tat: dict[str, float] = {}                             # key -> GCRA theoretical arrival time
        self._holders: dict[str, dict[str, float]] = {}             # key -> holder -> lapses at
        self._waiting: dict[str, OrderedDict[str, Any]] = {}         # key -> holder -> its AttemptDue message
        self._held: dict[str, str] = {}                              # holder -> key

    def ask(self, name: str, input: Any, attempt: Holder, now: float) -> Refused | None:
        """`driver.PermitAsk`: a permit for `attempt` of activity `name`, or when to ask again."""
        limit = self.registry.limit_of(name)
        if limit is None:
            return None
        holder = str(attempt)
        key = limit.name_for(name, input)
        refused, tat, holders = take(limit, self._tat.get(key, 0.0), self._holders.get(key, {}), holder, now,
                                     float("inf"), POLL)
        self._tat[key], self._holders[key] = tat, holders
        if refused is not None:
            return Refused(refused.until, refused.why, key)
        if limit.max_concurrent is not None:
            self._held[holder] = key
            self._waiting.get(key, {}).pop(holder, None)  # woken or not, it waits no more
        return None

    def wait(self, key: str, holder: str, message: Any) -> None:
        """Attempt `holder` waits for a permit of `key`: woken by the next one returned."""
        self._waiting.setdefault(key, OrderedDict())[holder] = message

    def give_back(self, holder: str) -> None:
        """Attempt `holder` ended: return its concurrency permit and wake the longest waiter."""
        key = self._held.pop(holder, None)
        if key is None:
            return
        self._holders.get(key, {}).pop(holder, None)
        waiting = self._waiting.get(key)
        if waiting:
            _, message = waiting.popitem(last=False)
            self._wake(message)
