"""Rate and concurrency limits of an activity, across every worker: the limit as data, and the pure
decisions each executor's permit store carries out (in memory in-process, `beluga/lua/permit.lua` on the
fleet, which mirrors `take`). An attempt that gets no permit is not failed: it waits on the run's durable
timer until `Refused.until`, holding no worker, and asks again then.

The rate is a GCRA (generic cell rate algorithm): one number per key, the theoretical arrival time `tat`
of the next start; a start is allowed when `now >= tat - (burst - 1) * interval`, and moves `tat` on by one
`interval`. Concurrency is a leased semaphore: the holders of a key with the time each permit lapses should
its holder never return it (a step that was never recorded); a holder's permit is returned when its
attempt's outcome is recorded, a lost worker's included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d*)\s*([smh]))?\s*$")


def parse_rate(text: str | float | int) -> float:
    """Starts per second of a rate such as `"10/s"`, `"60/m"`, `"1000/h"`, `"5/10s"`, or a number (per
    second). `ValueError` for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        rate = float(text)
    else:
        m = _RATE.match(str(text))
        if m is None:
            raise ValueError(f"a rate limit looks like '10/s', '60/m' or '1000/h', not {text!r}")
        count, span, unit = m.groups()
        rate = float(count) / ((float(span) if span else 1.0) * _PERIODS[unit or "s"])
    if not rate > 0:
        raise ValueError(f"a rate limit must be more than 0 per second, not {text!r}")
    return rate


RateKey = str | Callable[[Any], str]
MARGIN = 0.02  # permits are spaced 2% wider than the rate (see ActivityLimit.interval)


@dataclass(frozen=True, slots=True)
class ActivityLimit:
    """The limits of an activity: at most `per_second` starts a second (with bursts of `burst`), at most
    `max_concurrent` attempts running, across every worker. Activities with the same `key` share them
    (the LLM provider's name, say); a callable key is given the activity's input (per tenant)."""

    per_second: float | None = None
    max_concurrent: int | None = None
    key: RateKey | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.burst < 1:
            raise ValueError("a rate limit's burst must be at least 1")

    @property
    def interval(self) -> float:
        """Seconds between permits at the limit's rate (0 without a rate), `MARGIN` longer than the rate
        says: a permit is taken as its attempt is dispatched, and the attempt starts a little later (the
        broker's hop), by a little more or less each time; the margin keeps the starts themselves, measured
        where the activity runs, within the rate."""
        return (1.0 + MARGIN) / self.per_second if self.per_second else 0.0

    def name_for(self, activity: str, input: Any) -> str:
        """The key whose permits this call takes: its `key` (or what it says for `input`), else the
        activity's name."""
        if self.key is None:
            return activity
        return str(self.key(input)) if callable(self.key) else self.key


def limit_of(rate_limit: str | float | None, max_concurrent: int | None, rate_key: RateKey | None,
             burst: int = 1) -> ActivityLimit | None:
    """The decorator's arguments as a limit, or None when they set none."""
    if rate_limit is None and max_concurrent is None:
        return None
    return ActivityLimit(parse_rate(rate_limit) if rate_limit is not None else None, max_concurrent, rate_key, burst)


@dataclass(frozen=True, slots=True)
class Refused:
    """No permit of limit `key` now: ask again at `until` (epoch seconds). `why`: "rate" or "concurrency"."""

    until: float
    why: str
    key: str = ""


def gcra(tat: float, now: float, interval: float, burst: int) -> tuple[float | None, float]:
    """One start against a rate: (None, the new tat) when allowed now, else (the earliest time it is
    allowed, tat unchanged)."""
    allowed_at = tat - (burst - 1) * interval
    if now < allowed_at:
        return allowed_at, tat
    return None, max(tat, now) + interval


def earliest_free(holders: dict[str, float], now: float, poll: float) -> float:
    """When to ask again for a concurrency permit all `holders` hold: their earliest lapse, but no later
    than `poll` from now (a returned permit wakes a waiter at once; this only bounds a lost wake-up)."""
    return min(min(holders.values(), default=now + poll), now + poll)


def take(limit: ActivityLimit, tat: float, holders: dict[str, float], holder: str, now: float, lease: float,
         poll: float) -> tuple[Refused | None, float, dict[str, float]]:
    """Take one permit for `holder` (an attempt): (None, tat, holders) updated when granted, else
    (Refused, unchanged). Concurrency is checked first, so a refused attempt spends no rate. A holder
    that holds a permit already keeps it (a repeated ask is granted again and takes no second one)."""
    live = {h: until for h, until in holders.items() if until > now}
    if holder in live:
        return None, tat, live
    if limit.max_concurrent is not None and len(live) >= limit.max_concurrent:
        return Refused(earliest_free(live, now, poll), "concurrency"), tat, live
    if limit.per_second:
        wait, new_tat = gcra(tat, now, limit.interval, limit.burst)
        if wait is not None:
            return Refused(wait, "rate"), tat, live
        tat = new_tat
    if limit.max_concurrent is not None:
        live[holder] = now + lease
    return None, tat, live


@dataclass(frozen=True, slots=True)
class Holder:
    """The attempt a permit is for (one per attempt: a retry asks for a new one); `str()` names it."""

    workflow_id: str
    run_id: str
    seq: int
    attempt: int

    def __str__(self) -> str:
        return f"{self.workflow_id}\x1f{self.run_id}\x1f{self.seq}\x1f{self.attempt}"
