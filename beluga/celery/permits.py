"""The activities' rate and concurrency permits of the fleet, across every worker: `core.limits.take`
as one script on the history Redis (permit.lua), each limit's keys in a slot of their own. The
coordinator asks as it records an attempt's dispatch; a refused attempt waits on its run's durable timer
(armed by the same append), holding no worker, and one refused for concurrency is woken early when a
permit is returned (return_permit.lua names it; its timer is moved to now)."""

from __future__ import annotations

from typing import Any

from beluga.celery import messages
from beluga.celery.fleet import Fleet, timer_member
from beluga.celery.fleet_scripts import PermitCall, ReturnPermitCall
from beluga.core import steps as st
from beluga.core.definitions import Registry
from beluga.core.limits import Holder, Refused
from beluga.lua import Scripts

POLL = 5.0  # at most this long between asks of an attempt waiting for a concurrency permit (a lost wake-up)
# A concurrency permit is returned when its attempt's end is recorded (a lost worker's too, once the
# scheduler notices); one whose attempt's dispatch was never recorded (a coordinator that died between
# the ask and the append) lapses this long after it was taken.
LEASE = 3600.0


class FleetPermits:
    def __init__(self, fleet: Fleet, registry: Registry) -> None:
        self.fleet = fleet
        self.registry = registry
        self._lua = Scripts(fleet.redis, [PermitCall, ReturnPermitCall])

    def ask(self, name: str, input: Any, attempt: Holder, now: float) -> Refused | None:
        """`driver.PermitAsk`: a permit for `attempt` of activity `name`, or when to ask again. While it
        waits for a concurrency permit, its timer (`retry_timer_member`) is listed to be woken."""
        limit = self.registry.limit_of(name)
        if limit is None:
            return None
        key = limit.name_for(name, input)
        keys = self.fleet.names.limit(key)
        got = self._lua.run(PermitCall(
            tat_key=keys.tat, holders_key=keys.holders, waiters_key=keys.waiters, now=now,
            interval=limit.interval, burst=limit.burst, max_concurrent=limit.max_concurrent or 0,
            holder=str(attempt), lease=LEASE, poll=POLL,
            waiter=retry_timer_member(attempt.workflow_id, attempt.run_id, attempt.seq, attempt.attempt)))
        if int(got[0]) == 0:
            return None
        why = got[2].decode() if isinstance(got[2], bytes) else str(got[2])
        return Refused(float(got[1]), why, key)

    def give_back(self, name: str, input: Any, attempt: Holder) -> None:
        """`attempt` of activity `name` ended: return its concurrency permit and wake the attempt that has
        waited longest for one."""
        limit = self.registry.limit_of(name)
        if limit is None or limit.max_concurrent is None:
            return
        keys = self.fleet.names.limit(limit.name_for(name, input))
        waiter = self._lua.run(ReturnPermitCall(holders_key=keys.holders, waiters_key=keys.waiters,
                                                holder=str(attempt)))
        if waiter:
            member = bytes(waiter)
            workflow_id = member.split(b"\x00", 1)[0].decode()
            self.fleet.redis.zadd(self.fleet.names.shard_of(workflow_id).timers,
                                  {member: self.fleet.clock.now()}, xx=True)


def retry_timer_member(workflow_id: str, run_id: str, seq: int, attempt: int) -> bytes:
    """The durable timer that begins attempt `attempt` of activity `seq` (a retry's, or a permit wait's)."""
    return timer_member(workflow_id, messages.encode(st.AttemptDue(seq, attempt), run_id))
