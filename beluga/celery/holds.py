"""What a worker holds: the activity attempts whose deadlines it renews, so that an attempt whose
worker dies is noticed within a lease. `Holds`: those whose messages the worker's consumer just took;
`EagerHolds`: those a process runs eagerly, which no message carries (the scheduler's round renews the
rest of what the worker holds, see scheduler.held_attempts)."""

from __future__ import annotations

import threading
import time

from beluga.celery.fleet import Fleet
from beluga.celery.outages import Quiet
from beluga.celery.task_events import TaskEventOutbox
from beluga.logs import get_logger

log = get_logger("beluga.tasks")
# Through an outage each process logs a topic's first error, then a line every ten seconds at most.
renewing = Quiet(log, "renewing activity leases")


class EagerHolds:
    """The attempts this process runs eagerly (no message: no worker main process renews their
    deadlines), renewed from a thread of their own while they run."""

    def __init__(self, fleet: Fleet, task_events: TaskEventOutbox) -> None:
        self._fleet = fleet
        self._task_events = task_events
        self.in_flight: set[tuple[str, int, int]] = set()
        self._renewer: threading.Thread | None = None

    def add(self, attempt: tuple[str, int, int]) -> None:
        """Hold `attempt` (workflow id, seq, attempt) until `discard`ed."""
        self.in_flight.add(attempt)
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self._renew_forever, name="beluga-lease", daemon=True)
            self._renewer.start()

    def discard(self, *attempts: tuple[str, int, int]) -> None:
        self.in_flight.difference_update(attempts)

    def _renew_forever(self) -> None:
        ok = True
        while True:  # after a failure, try again soon: the lease may be about to lapse
            time.sleep(max(0.5, self._fleet.lease_seconds / 3) if ok else 0.25)
            self._task_events.flush()  # the start of an eager attempt still running shows in Flower
            try:
                self._fleet.hold(list(self.in_flight))
                ok = True
                renewing.recovered()
            except Exception as exc:
                ok = False
                renewing.error("could not renew activity leases", exc=exc)


class Holds:
    """The attempts whose messages the worker's consumer just took: their deadlines are renewed (moved
    to a lease from now) from a thread of their own, in batches of one command, so the consumer loop
    never waits on Redis and a worker that dies holding a message is noticed within the lease. The
    scheduler renews everything the worker still holds, every second or so (`held_attempts`); so a
    message whose deadline (as its dispatch recorded it, `until`) is further ahead than two of those
    rounds, the common case of a message taken soon after it was sent, needs no renewal of its own:
    its deadline is already at most a lease from its dispatch."""

    def __init__(self, fleet: Fleet, interval: float = 0.02) -> None:
        self._fleet = fleet
        self._interval = interval
        self._margin = 2 * min(1.0, fleet.lease_seconds / 3) + 0.5  # the scheduler's round, twice, and some
        self._quiet = Quiet(log, "renewing activity deadlines")
        self._pending: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, attempt: tuple[str, int, int], until: float | None = None) -> None:
        """`until`: the attempt's deadline, on the fleet's clock. The consumer loop calls this: it reads
        the clock's last measurement, never waiting on Redis (none yet: the attempt is renewed)."""
        now = self._fleet.clock.cached()
        if until is not None and now is not None and until - now > self._margin:
            return
        with self._lock:
            self._pending.append(attempt)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._flush_forever, name="beluga-holds", daemon=True)
                self._thread.start()
        self._wake.set()

    def _flush_forever(self) -> None:
        backoff = self._interval
        while True:
            self._wake.wait()
            time.sleep(backoff)  # let a burst of messages share one round trip
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                self._fleet.hold(batch)
                backoff = self._interval
                self._quiet.recovered()
            except Exception as exc:
                # Kept and tried again (renewing twice is harmless); meanwhile the scheduler renews what
                # the worker holds, and the dispatch deadlines still stand.
                self._quiet.error("could not renew %d activity deadlines", len(batch), exc=exc)
                with self._lock:
                    self._pending[:0] = batch[-10000:]
                backoff = min(1.0, backoff * 4)
                self._wake.set()
