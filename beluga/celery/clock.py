"""The fleet's one clock: the history Redis's `TIME`, as every process of the fleet sees it.

Deadlines, leases and timer due times are written by one process and compared with "now" by another
(an attempt's deadline is set by the append that dispatched it, renewed by the worker that holds it and
judged by any worker's scheduler; a timer is armed by one coordinator and drained by any scheduler), and
the times recorded in events are what `ctx.now()` returns in whichever process replays the run. With each
process on its own wall clock, one worker 120 s ahead took every live attempt for lost (157 executions for
80 calls), fired 60 s sleeps after 2 s, and `ctx.now()` measured a 60 s sleep as 190 s or -118 s. So
every such time comes from one clock, the history Redis's.

A `FleetClock` asks the server for its `TIME` once in a while (at most every `refresh_seconds`, on first
use, and on the first use past that interval: the scheduler's round asks every 0.2 s, so an idle worker
sends one `TIME` per interval) and anchors it to the process's monotonic clock at the midpoint of the
round trip; `now()` is that server time plus the monotonic time elapsed since. The process's wall clock
is never read, so a wall clock that is wrong, or that an NTP step moves between two refreshes, changes
nothing. The bound: `now()` is within half the round trip of the last measurement (the server answered
somewhere inside it) plus the monotonic clock's rate error since then (NTP slews it by at most 500 ppm:
2.5 ms over the default 5 s) of the server's `TIME`. A forked pool process inherits the anchor, which
stays valid there (the monotonic clock is the machine's, not the process's), and refreshes it itself
once it is due. Should the server not answer a refresh, the last anchor serves on (its error grows by
that rate only) and the next try comes a second later; with no anchor yet, `now()` raises the server's
error, as the Redis command that follows it would.

The server's own clock may be stepped (NTP on the Redis host, or a failover to a replica on another
host): each process follows within one refresh interval; what was recorded before stays as recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

REFRESH_SECONDS = 5.0  # how old a measurement may get before the next use measures again
RETRY_SECONDS = 1.0  # after a failed refresh, the last measurement serves this long before the next try


class FleetClock:
    """The history Redis's clock, read in this process. `server_time` asks the server (one `TIME`:
    seconds since the epoch); `monotonic` is the process's monotonic clock (injected by tests)."""

    def __init__(self, server_time: Callable[[], float], refresh_seconds: float = REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._server_time = server_time
        self._monotonic = monotonic
        self.refresh_seconds = refresh_seconds
        # (server time, monotonic time at the midpoint of its round trip, half the round trip); one tuple,
        # replaced whole, so that threads (and a process forked from one) never see half a measurement
        self._anchor: tuple[float, float, float] | None = None
        self._next_refresh = float("-inf")  # monotonic time of the next measurement

    def now(self) -> float:
        """Seconds since the epoch on the history Redis's clock. Measures first when the last
        measurement is older than `refresh_seconds` (one round trip)."""
        mono = self._monotonic()
        if mono >= self._next_refresh:
            self._refresh(mono)
        anchor = self._anchor
        assert anchor is not None  # _refresh raised otherwise
        return anchor[0] + (self._monotonic() - anchor[1])

    def cached(self) -> float | None:
        """`now()` from the last measurement, without a round trip (for a caller that must never wait on
        Redis); None before the first."""
        anchor = self._anchor
        return None if anchor is None else anchor[0] + (self._monotonic() - anchor[1])

    @property
    def uncertainty(self) -> float | None:
        """Half the round trip of the last measurement: how far `now()` may be from the server's `TIME`
        (plus the monotonic clock's drift since); None before the first."""
        anchor = self._anchor
        return None if anchor is None else anchor[2]

    def _refresh(self, mono: float) -> None:
        try:
            before = self._monotonic()
            server = self._server_time()
            after = self._monotonic()
        except Exception:
            if self._anchor is None:
                raise
            self._next_refresh = mono + RETRY_SECONDS  # the last measurement serves meanwhile
            return
        self._anchor = (server, (before + after) / 2, (after - before) / 2)
        self._next_refresh = after + self.refresh_seconds


def redis_time(reply: tuple[int, int] | list[int]) -> float:
    """A Redis `TIME` reply (seconds, microseconds) as seconds since the epoch."""
    seconds, micros = reply
    return int(seconds) + int(micros) / 1e6
