"""The activities' rate and concurrency permits of the fleet, across every worker: `core.limits.take`
as one script on the history Redis (permit.lua), each limit's keys in a slot of their own. The
coordinator asks as it records an attempt's dispatch. A start its rate reserved a little later is sent
with a broker countdown (held by a worker's consumer, no pool process); a refused attempt waits on its
run's durable timer (armed by the same append), holding no worker, and one refused for concurrency is
handed a returned permit in its turn (by priority, aged by its wait: core/priority.py) and woken at once
(return_permit.lua names it)."""

from __future__ import annotations

import time
from typing import Any

from beluga import codec
from beluga.celery import messages
from beluga.celery.fleet import Fleet, timer_member
from beluga.celery.fleet_scripts import PermitCall, ReturnPermitCall, StartGateCall
from beluga.core import limits
from beluga.core import steps as st
from beluga.core.definitions import Registry
from beluga.core.limits import Granted, Holder, Refused
from beluga.core.priority import AGING, waiter_score
from beluga.lua import Scripts

# A concurrency permit is returned when its attempt's end is recorded (a lost worker's too, once the
# scheduler notices) or its run closes; one whose attempt's dispatch was never recorded (a coordinator
# that died between the ask and the append) lapses this long after its start.
LEASE = 3600.0


class FleetPermits:
    def __init__(self, fleet: Fleet, registry: Registry, aging: float = AGING) -> None:
        self.fleet = fleet
        self.registry = registry
        self.aging = aging  # BELUGA_PRIORITY_AGING (see core/priority.py)
        self._lua = Scripts(fleet.redis, [PermitCall, ReturnPermitCall, StartGateCall])

    def ask(self, name: str, input: Any, attempt: Holder, now: float) -> Granted | Refused | None:
        """`driver.PermitAsk`: a permit for `attempt` of activity `name`, or when to ask again. While it
        waits for a concurrency permit, its timer (`retry_timer_member`) is listed to be woken."""
        limit = self.registry.limit_of(name)
        if limit is None:
            return None
        key = limit.name_for(name, input)
        keys = self.fleet.names.limit(key)
        waiter = retry_timer_member(attempt.workflow_id, attempt.run_id, attempt.seq, attempt.attempt)
        got = self._lua.run(PermitCall(
            tat_key=keys.tat, holders_key=keys.holders, waiters_key=keys.waiters, slots_key=keys.slots,
            waiting_key=keys.waiting, now=now,
            interval=limit.interval, burst=limit.burst, max_concurrent=limit.max_concurrent or 0,
            holder=str(attempt), lease=LEASE, poll=limits.POLL, horizon=limits.HORIZON, lead=limits.LEAD,
            kept=limits.KEPT, waiter=waiter, score=waiter_score(now, attempt.priority, self.aging)))
        if int(got[0]) == 0:
            return Granted(float(got[1]))
        why = got[2].decode() if isinstance(got[2], bytes) else str(got[2])
        return Refused(float(got[1]), why, key)

    def gate(self, name: str, input: Any, attempt: Holder) -> None:
        """Called where `attempt` runs, right before a rate-limited activity starts: wait until the rate
        allows the start (`core.limits.start_gate`, start_gate.lua, by the history Redis's clock)."""
        while (wait := self.gate_wait(name, input, attempt)) > 0:
            time.sleep(wait)

    def gate_wait(self, name: str, input: Any, attempt: Holder) -> float:
        """One look of `gate`: 0.0 when `attempt` may start now (its start is noted), else the seconds to
        wait before looking again (an async attempt waits them on its event loop)."""
        limit = self.registry.limit_of(name)
        if limit is None or not limit.per_second:
            return 0.0
        call = StartGateCall(starts_key=self.fleet.names.limit(limit.name_for(name, input)).starts,
                             count=limit.burst, window=limit.burst * limit.interval, holder=str(attempt))
        return float(self._lua.run(call))

    def give_back(self, name: str, input: Any, attempt: Holder, now: float | None = None) -> str | None:
        """`attempt` of activity `name` ended (or its run closed while it waited): return its concurrency
        permit, hand it to the first waiter in order and queue that one's `AttemptDue` (its timer stays,
        and then finds it begun). Returns that attempt's workflow id, for the caller to wake, or None."""
        limit = self.registry.limit_of(name)
        if limit is None or limit.max_concurrent is None:
            return None
        keys = self.fleet.names.limit(limit.name_for(name, input))
        own = retry_timer_member(attempt.workflow_id, attempt.run_id, attempt.seq, attempt.attempt)
        waiter = self._lua.run(ReturnPermitCall(holders_key=keys.holders, waiters_key=keys.waiters,
                                                waiting_key=keys.waiting, holder=str(attempt), own=own,
                                                now=self.fleet.clock.now() if now is None else now,
                                                hold=limits.HANDED))
        if not waiter:
            return None
        workflow_id, encoded = bytes(waiter).split(b"\x00", 1)
        self.fleet.push(workflow_id.decode(), codec.decode(encoded))
        return workflow_id.decode()


def retry_timer_member(workflow_id: str, run_id: str, seq: int, attempt: int) -> bytes:
    """The durable timer that begins attempt `attempt` of activity `seq` (a retry's, or a permit wait's)."""
    return timer_member(workflow_id, messages.encode(st.AttemptDue(seq, attempt), run_id))
