"""Rate and concurrency limits of an activity, across every worker: the limit as data, and the pure
decisions each executor's permit store carries out (in memory in-process, `beluga/lua/permit.lua` on the
fleet, which mirrors `take`). An attempt that gets no permit is not failed: it waits on the run's durable
timer until `Refused.until`, holding no worker, and asks again then.

The rate is a GCRA (generic cell rate algorithm) with reservations: one number per key, the theoretical
arrival time `tat` of the next start; each permit reserves the start `max(now, tat - (burst - 1) *
interval)` and moves `tat` on by one `interval`. A start up to `HORIZON` away is held back by the executor
(a broker countdown, a timer of the engine); a later one waits on the run's durable timer and asks again
`LEAD` before it, keeping its reservation. Concurrency is a leased semaphore: the holders of a key with the
time each permit lapses should its holder never return it (a step that was never recorded); a holder's
permit is returned when its attempt's outcome is recorded, a lost worker's included, or its run closes,
and handed at once to the waiter first in order (`give_back`; the order is by priority with aging, see
`core/priority.py`), so that no attempt asking meanwhile takes it from the one woken for it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from beluga.core.priority import AGING, DEFAULT, waiter_score

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
        """Seconds between starts at the limit's rate (0 without a rate), `MARGIN` longer than the rate
        says, so that the starts as the activity itself sees them (a moment after the gate let it through,
        see `start_gate`) keep within the rate."""
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
    """No permit of limit `key` now: ask again at `until` (epoch seconds). `why`: "rate" (its start is
    reserved, further than `HORIZON` away) or "concurrency"."""

    until: float
    why: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class Granted:
    """A permit: the attempt starts at `start_at` (its reserved slot of the rate; now or up to `HORIZON`
    later: the executor holds it back till then, holding no worker)."""

    start_at: float


HORIZON = 2.0   # a reserved start further away than this waits on the run's durable timer ...
LEAD = 1.0      # ... until this long before it (a timer fires up to a scheduler round late)
POLL = 30.0     # the longest an attempt waits for a concurrency permit before asking again (a lost wake-up)
KEPT = 3600.0   # a reserved start is forgotten this long after it passed
HANDED = 60.0   # a permit handed to a waiter lapses this long after, should the waiter never ask (its run closed)


@dataclass(slots=True)
class LimitState:
    """One limit's permits: the rate's theoretical arrival time `tat`, the attempts holding a concurrency
    permit (-> when it lapses), each attempt's reserved start (-> its time) and the attempts waiting for a
    concurrency permit (-> their order, `priority.waiter_score`; `order` keeps them sorted, so that a
    limit with thousands of waiters answers each ask in O(log n)). permit.lua keeps the same in Redis."""

    tat: float = 0.0
    holders: dict[str, float] = field(default_factory=dict)
    slots: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, float] = field(default_factory=dict)
    order: list[tuple[float, str]] = field(default_factory=list)

    def wait(self, holder: str, score: float) -> None:
        if holder not in self.waiters:
            self.waiters[holder] = score
            insort(self.order, (score, holder))

    def unwait(self, holder: str) -> None:
        score = self.waiters.pop(holder, None)
        if score is not None:
            del self.order[bisect_left(self.order, (score, holder))]

    def ahead_of(self, score: float) -> int:
        """How many waiters are before `score` in order."""
        return bisect_left(self.order, (score, ""))


def take(limit: ActivityLimit, state: LimitState, holder: str, now: float, lease: float,
         priority: int = DEFAULT, aging: float = AGING) -> Granted | Refused:
    """One permit for attempt `holder` (of `priority`), `state` updated. Concurrency is checked first, so a
    refused attempt reserves no start: it gets a permit when fewer waiters are ahead of it in order than
    permits are free (a permit returned is handed to the first waiter, `give_back`, so one is free here only
    when a holder's lease lapsed), else it waits, in order (`priority.waiter_score`: its priority, aged by
    how long it has waited). The rate is a GCRA *with reservations*: each permit reserves the next free
    start (`interval` after the one before; `burst` of them may be due at once), so the attempts waiting
    for the rate are woken one per slot, never all at once to race for one (the start gate, where the
    attempt runs, absorbs how late or early each one starts); starts are reserved in the order attempts
    ask. An attempt asking again (its start came near, or its step was recorded twice) keeps its permit
    and its start."""
    state.holders = {h: until for h, until in state.holders.items() if until > now}
    held = holder in state.holders
    if limit.max_concurrent is not None and not held:
        mine = state.waiters.get(holder, waiter_score(now, priority, aging))
        if state.ahead_of(mine) >= limit.max_concurrent - len(state.holders):
            state.wait(holder, mine)
            first = min(state.holders.values(), default=now + POLL)
            return Refused(min(first, now + POLL), "concurrency")
        state.unwait(holder)
    start_at = now
    if limit.per_second:
        state.slots = {h: at for h, at in state.slots.items() if at > now - KEPT}
        if holder in state.slots:
            start_at = state.slots[holder]
        else:
            start_at = max(now, state.tat - (limit.burst - 1) * limit.interval)
            state.tat = max(state.tat, start_at) + limit.interval
            state.slots[holder] = start_at
    if limit.max_concurrent is not None:
        state.holders[holder] = max(start_at, now) + lease
    if start_at - now > HORIZON:
        return Refused(start_at - LEAD, "rate")
    return Granted(max(start_at, now))


def give_back(state: LimitState, holder: str, now: float, hold: float = HANDED) -> str | None:
    """Attempt `holder` ended: its concurrency permit is returned and handed to the first waiter in order
    (the lowest `waiter_score`; the earliest to wait among equals), which holds it for `hold` seconds
    until it asks (then `take` finds it held). Returns that waiter, for the caller to wake, or None (no
    waiter, or `holder` held no permit). A waiter given back (its run closed) leaves the waiters."""
    state.unwait(holder)
    if state.holders.pop(holder, None) is None or not state.order:
        return None
    first = state.order[0][1]
    state.unwait(first)
    state.holders[first] = now + hold
    return first


def start_gate(starts: list[float], now: float, limit: ActivityLimit) -> float:
    """The last check, where the attempt runs, right before it starts: 0.0 when it may start now (its
    start is added to `starts`, the key's recent starts), else the seconds to wait. At most `burst` starts
    in any `burst * interval` seconds: the reserved starts keep to that already, and this absorbs what
    made one late or early (a busy worker, a broker's hop, a pause), at the cost of a wait of that order
    in the worker. permit.lua's neighbour start_gate.lua mirrors it."""
    window = limit.burst * limit.interval
    starts[:] = [t for t in starts if t > now - window]
    if len(starts) < limit.burst:
        starts.append(now)
        return 0.0
    return starts[0] + window - now


@dataclass(frozen=True, slots=True)
class Holder:
    """The attempt a permit is for (one per attempt: a retry asks for a new one); `str()` names it. Its
    `priority` (its call's, else its run's) orders it among the waiters for a permit."""

    workflow_id: str
    run_id: str
    seq: int
    attempt: int
    priority: int = DEFAULT

    def __str__(self) -> str:
        return f"{self.workflow_id}\x1f{self.run_id}\x1f{self.seq}\x1f{self.attempt}"
