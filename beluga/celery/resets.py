"""A reset on the fleet (`CeleryExecutor.reset`): the new run is stored with start.lua, as any run the
client starts (listed, its start message queued, its execution timeout armed, in one atomic step), and
what it had in flight at its reset point is handed to the fleet's durable machinery: timers and retry
backoffs as timers in its shard, attempts that were running as lost-attempt reports in its inbox (the
retry policy decides, as after a worker's crash). The coordinator that takes the start message replays
the kept events and records what the current code asks for after the point (core/reset.py). Nothing on
the coordinator's or the workers' path changes for it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from beluga.celery import messages
from beluga.celery.fleet import timer_member
from beluga.celery.permits import retry_timer_member
from beluga.core import steps as st
from beluga.core.recovery import AttemptInterrupted, RearmTimer, RetryDue
from beluga.core.reset import ResetPlan, in_flight

if TYPE_CHECKING:
    from beluga.celery.client import CeleryExecutor


def start_reset(client: CeleryExecutor, plan: ResetPlan) -> None:
    """Store the reset run `plan.state` over the closed one, arm what it owes, and wake it."""
    state = plan.state
    wid, rid = state.workflow_id, state.run_id
    deadline = state.history[0].attrs.get("deadline")
    timeout = None if deadline is None else (deadline, messages.encode(st.TimedOut(), rid))
    request_id = uuid.uuid4().hex
    client._retrying(f"resetting workflow {wid}", lambda: client.fleet.start_run(state, request_id, timeout),
                     request_id)
    timers = client.fleet.names.shard_of(wid).timers
    for obligation in in_flight(state):
        if isinstance(obligation, RearmTimer):
            member = timer_member(wid, messages.encode(st.TimerFired(obligation.seq), rid))
            client.fleet.redis.zadd(timers, {member: obligation.due})
        elif isinstance(obligation, RetryDue):
            member = retry_timer_member(wid, rid, obligation.seq, obligation.attempt)
            client.fleet.redis.zadd(timers, {member: obligation.due})
        elif isinstance(obligation, AttemptInterrupted):
            client.fleet.push(wid, messages.encode(st.ActivityOutcome(
                obligation.seq, obligation.attempt, False, obligation.failure), rid))
    client._wake(wid, state.queue)
