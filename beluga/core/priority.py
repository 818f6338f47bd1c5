"""Priorities of runs and activity calls, as Temporal's priority keys: an int from 1 (highest) to 5
(lowest), 3 when none is given. A call's own priority wins over its run's.

A priority decides two orders, never whether an attempt runs:
- **Freed concurrency permits.** The attempts waiting for a permit of a limit are ordered by a score,
  `waiter_score`: when they began to wait plus `AGING` seconds for each level below the highest. A
  returned permit is handed to the waiter with the lowest score. So a higher priority wins among waiters
  that began at about the same time, and a lower one *ages*: a waiter of priority p that began at b is
  served before every waiter that begins after `b + (p - 1) * AGING`, whatever its priority. That is the
  bound on starvation: once a waiter has waited `(p - 1) * AGING` seconds (40 s for priority 5 by
  default), no newcomer passes it; it waits only for those already ahead of it, a finite number.
- **Broker slots.** An attempt's message carries a broker priority (`broker_priority`), so that of the
  attempts waiting in one queue a worker takes the higher ones first, where the broker orders by priority.
  An attempt of the default priority is sent as before (no priority), so each broker can only order
  around it: Redis lists priority 0 first, and kombu sends a message without priority as 0, so there
  lower priorities (4, 5) are sent behind the default; RabbitMQ delivers a message without priority as
  its lowest, so there higher ones (1, 2) are sent ahead of it (with `x-max-priority` on the queue).

Pure: the caller gives the times."""

from __future__ import annotations

from typing import Any

HIGHEST = 1
LOWEST = 5
DEFAULT = 3
AGING = 10.0  # seconds of waiting worth one level of priority (see the module)

# Redis (kombu's priority steps 0, 3, 6, 9; the lower first): the default and higher in the first list
_REDIS = {1: None, 2: None, 3: None, 4: 3, 5: 6}
# AMQP (RabbitMQ's priority queues; the higher first, a message without priority as 0)
_AMQP = {1: 2, 2: 1, 3: None, 4: None, 5: None}


def check_priority(priority: Any, what: str = "a priority") -> int | None:
    """`priority` if it is None or an int from HIGHEST to LOWEST, else `ValueError` saying what is allowed."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not HIGHEST <= priority <= LOWEST:
        raise ValueError(f"{what} is an int from {HIGHEST} (highest) to {LOWEST} (lowest), "
                         f"{DEFAULT} by default, not {priority!r}")
    return priority


def effective_priority(call: int | None, run: int | None) -> int:
    """The priority of an activity call: its own, else its run's, else DEFAULT."""
    if call is not None:
        return call
    return run if run is not None else DEFAULT


def waiter_score(began: float, priority: int, aging: float = AGING) -> float:
    """The order of an attempt that began to wait for a permit at `began`: the lowest is served first."""
    return began + (priority - HIGHEST) * aging


def broker_priority(priority: int, redis: bool) -> int | None:
    """The broker message priority of an attempt of `priority` (None: send it without one; see the
    module), for a Redis broker (`redis`) or an AMQP one."""
    return (_REDIS if redis else _AMQP).get(priority)
