"""The activities' rate and concurrency permits of the in-process executor: `core.limits.take` on state
held in memory (one process runs every attempt, so memory is "every worker"), touched only by the
coordinator thread. A returned concurrency permit is handed to the first waiter in order (by priority,
aged by how long each has waited: `core.limits.give_back`), which is woken to take it."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from beluga.core import limits
from beluga.core.definitions import Registry
from beluga.core.limits import Granted, Holder, LimitState, Refused, start_gate, take
from beluga.core.priority import AGING


class MemoryPermits:
    def __init__(self, registry: Registry, wake: Callable[[Any], None],
                 clock: Callable[[], float] = time.time, aging: float = AGING) -> None:
        self.registry = registry
        self.aging = aging                                              # see core/priority.py
        self._wake = wake                                               # posts a waiter's message now
        self._clock = clock
        self._limits: defaultdict[str, LimitState] = defaultdict(LimitState)
        self._waiting: dict[str, Any] = {}                              # holder waiting -> its message
        self._held: dict[str, str] = {}                                 # holder -> its limit's key
        self._starts: defaultdict[str, list[float]] = defaultdict(list)  # key -> recent starts (the gate's)
        self._starts_lock = threading.Lock()                            # the gate runs in the pool's threads

    def ask(self, name: str, input: Any, attempt: Holder, now: float) -> Granted | Refused | None:
        """`driver.PermitAsk`: a permit for `attempt` of activity `name`, or when to ask again."""
        limit = self.registry.limit_of(name)
        if limit is None:
            return None
        key, holder = limit.name_for(name, input), str(attempt)
        # returned at its end, never lapses
        got = take(limit, self._limits[key], holder, now, float("inf"), attempt.priority, self.aging)
        if isinstance(got, Refused):
            if got.why == "concurrency":
                self._held[holder] = key  # its place among the waiters is given up at its end too
            return Refused(got.until, got.why, key)
        if limit.max_concurrent is not None:
            self._held[holder] = key
            self._waiting.pop(holder, None)  # woken or not, it waits no more
        return got

    def gate(self, name: str, input: Any) -> float:
        """Called by the pool right before a limited activity starts: 0.0 when its rate allows the start
        now (it is noted), else the seconds to wait before asking again (`core.limits.start_gate`). Never
        waits itself: a thread sleeps the wait, the event loop awaits it."""
        limit = self.registry.limit_of(name)
        if limit is None or not limit.per_second:
            return 0.0
        starts = self._starts[limit.name_for(name, input)]
        with self._starts_lock:
            return start_gate(starts, time.time(), limit)

    def wait(self, key: str, holder: str, message: Any) -> None:
        """Attempt `holder` waits for a concurrency permit of `key`: woken when one is handed to it, at once
        if one was while its step was carried out (the step's returned permit, given back before this)."""
        if holder in self._limits[key].holders:
            self._wake(message)
            return
        self._waiting[holder] = message

    def give_back(self, holder: str) -> None:
        """Attempt `holder` ended (or its run closed while it waited): return its concurrency permit (or
        its place among the waiters) and wake the waiter it is handed to."""
        key = self._held.pop(holder, None)
        self._waiting.pop(holder, None)
        if key is None:
            return
        woken = limits.give_back(self._limits[key], holder, self._clock())
        if woken is not None:
            self._held[woken] = key
            message = self._waiting.pop(woken, None)
            if message is not None:
                self._wake(message)
