"""A heap of due times for the in-process engine: durable timers, retry backoffs, timeouts.

The durable part is in the history (`fire_at`, `retry_in`, `deadline`); this heap is only the alarm
clock, re-armed from the history after a restart."""

from __future__ import annotations

import heapq
import itertools
from typing import Any


class TimerHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._counter = itertools.count()

    def arm(self, due: float, item: Any) -> None:
        heapq.heappush(self._heap, (due, next(self._counter), item))

    def pop_due(self, now: float) -> list[Any]:
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out

    def next_due(self) -> float | None:
        """The earliest due time armed, or None."""
        return self._heap[0][0] if self._heap else None

    def wait_time(self, now: float, ceiling: float) -> float:
        """Seconds until the next due time, at most `ceiling`."""
        if not self._heap:
            return ceiling
        return max(0.0, min(ceiling, self._heap[0][0] - now))

    def __len__(self) -> int:
        return len(self._heap)
