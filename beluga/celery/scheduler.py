"""A small loop inside every worker's main process: moves due durable timers into run inboxes, wakes
those runs, renews this worker's announcement (see roster) and the deadlines of the activity attempts
whose messages this worker holds (waiting, scheduled for a retry or running), in one command, announces
the queues this worker consumes, reclaims activity attempts whose deadline passed (their worker died or
lost the message, no heartbeat came, or no worker took them before their schedule-to-start timeout),
and sends again, with backoff, those that no worker has taken while a live worker consumes their queue
(a lost message, or a backlog).

Several workers run it at once safely: each due timer and each lost attempt is claimed atomically.
Through a Redis or broker outage it keeps going, logging a line every few seconds at most; once Redis
answers again it first renews what this worker holds, and reclaims nothing for a moment, so that
every live worker can renew what it holds before anyone's attempts are taken for lost."""

from __future__ import annotations

import threading
import time
from typing import Any

from beluga.celery.fleet import Lost
from beluga.celery.outages import Quiet
from beluga.celery.schedules import fire_due_schedules
from beluga.core.failure import no_heartbeat, not_started_in_time, worker_lost
from beluga.logs import get_logger

log = get_logger("beluga.scheduler")
BACKLOG_LOOKS = 3  # looks at an untaken attempt whose queue has messages before it is sent again all the same
SWALLOWED_COPIES = 3  # copies that left an empty queue unclaimed before the scheduler warns
RECOVERY_GRACE = 1.0  # seconds without reclaiming after Redis comes back (holders renew first)


def tick(rt: Any, now: float, reclaim: bool = True, safety_nets: bool = True) -> int:
    """One round; returns how much it did. Separate from the loop so tests can step it.

    Every round drains the due timers. With `safety_nets` it also looks at lapsed attempts (when
    `reclaim`) and sweeps runs whose wake-up was lost: their thresholds are seconds (a lease, the sweep's
    grace), so the loop runs them about once a second, not every round (see `safety_interval`)."""
    fleet = rt.fleet
    done, wake = fleet.drain_timers(now)
    done += fire_due_schedules(rt, now)  # durable schedules: beluga/celery/schedules.py
    woken, more = 0, []
    if safety_nets:
        if reclaim:
            done += _reclaim_lapsed(rt, now)
        woken, more = fleet.sweep(now)
    for shard in sorted({*wake, *more}):
        rt.sender.wake_shard(shard)
    return done + woken


def _reclaim_lapsed(rt: Any, now: float) -> int:
    """Attempts past their deadline: a lost one (its worker died, no heartbeat came) or one that waited
    for a worker past its schedule-to-start timeout is reclaimed, its failure handed to the coordinator;
    one that no worker has taken yet is not lost: it gets a later deadline, and its message is sent again
    when a live worker consumes its queue and the message looks lost: the queue is empty (a Redis
    broker's queue length, one command per queue), or the attempt was looked at BACKLOG_LOOKS times
    already (a long backlog, or a broker that cannot tell); the claim lets only one copy start it. No
    broker queue is read. Copies that keep leaving an empty queue unclaimed (SWALLOWED_COPIES) are
    reported with each new one: something outside the fleet takes them."""
    done = 0
    live: set[str] | None = None
    lengths: dict[str, int | None] = {}
    for item in rt.fleet.lapsed(now):
        waiting = item.waiting
        if waiting is None or (waiting.to_start_by is not None and now >= waiting.to_start_by):
            if rt.fleet.reclaim(item, _failure(rt, item)):
                rt.sender.wake(item.workflow_id, None)
                done += 1
            continue
        if live is None:
            live = rt.fleet.live_queues(now)
        consumed = waiting.queue in live
        if consumed and (waiting.looks < BACKLOG_LOOKS or waiting.resent >= SWALLOWED_COPIES):
            if waiting.queue not in lengths:
                lengths[waiting.queue] = rt.sender.queue_length(waiting.queue)
            consumed = lengths[waiting.queue] == 0 or waiting.looks >= BACKLOG_LOOKS
        again = rt.fleet.requeue(item, now, resend=consumed)
        if again is None:
            continue
        if consumed:
            if lengths.get(waiting.queue) == 0 and waiting.resent >= SWALLOWED_COPIES:
                # Copies went into a queue that live workers consume and left it, yet none was claimed:
                # something outside the fleet takes them. Said loudly each time; the attempt keeps waiting
                # (a schedule_to_start_timeout bounds that), as failing it could fail a call that never ran.
                log.warning("attempt %s of %s seq %s: %d copies sent to queue %r left it, yet no worker of this "
                            "fleet took one; is a worker of another deployment (another BELUGA_REDIS_URL or "
                            "BELUGA_KEY_PREFIX) consuming this broker's queue %r? Sending it again",
                            item.attempt, item.workflow_id, item.seq, waiting.resent, waiting.queue, waiting.queue)
            else:
                log.info("attempt %s of %s seq %s not taken by a worker within %.3gs: sending it again to queue %r",
                         item.attempt, item.workflow_id, item.seq, now - waiting.sent_at, waiting.queue)
            rt.sender.publish(again.args, again.queue)
            done += 1
        elif waiting.looks == 0:
            log.warning("attempt %s of %s seq %s waits for a worker on queue %r, which no live worker consumes",
                        item.attempt, item.workflow_id, item.seq, waiting.queue)
    return done


def _failure(rt: Any, lost: Lost) -> dict[str, Any]:
    waiting = lost.waiting
    if waiting is not None and waiting.to_start_by is not None:  # not retried: it would wait in the same queue
        return not_started_in_time(lost.attempt, waiting.to_start_by - waiting.sent_at, waiting.queue)
    heartbeat_timeout = lost.info.get("heartbeat_timeout")
    if heartbeat_timeout:
        return no_heartbeat(None, lost.attempt, heartbeat_timeout)
    return worker_lost(lost.attempt, rt.settings.lease_seconds)


def held_attempts() -> list[tuple[str, int, int]]:
    """The activity attempts whose messages this worker process holds: waiting for a pool process,
    scheduled for a retry, or running (Celery's request registry; a lost broker connection drops the
    ones not yet running from it). A running attempt that promised heartbeats is left out: its
    heartbeats keep its deadline."""
    from celery.worker import state

    out = []
    active = state.active_requests
    for request in state.requests.copy().values():
        try:
            if request.type == "beluga.activity":
                args = request.args
                if (args[6] or {}).get("heartbeat_timeout") and request in active:
                    continue
                out.append((args[0], int(args[2]), int(args[3])))
        except Exception:  # a malformed message is rejected by the task itself
            continue
    return out


def consumed_queues(app: Any) -> list[str]:
    """The queues this worker consumes (`-Q`, and one per activity it has the code of)."""
    queues = app.amqp.queues
    return sorted(getattr(queues, "consume_from", None) or queues.keys())


def safety_interval(lease_seconds: float, interval: float) -> float:
    """How often the scheduler looks for lapsed attempts and lost wake-ups: once a second, and at least five
    times per lease (a lost attempt is dispatched again within a lease and a fifth of one), never more
    often than its rounds. Each look is a few commands per shard: 16 shards, every 0.2 s, made an idle
    worker send about 560 commands a second."""
    return max(interval, min(1.0, lease_seconds / 5))


class Scheduler:
    """The loop of one worker's main process (see the module's docstring), built with the worker's
    `FleetWorker` (`rt`) and the Celery app whose queues it consumes; `start` once the worker is ready."""

    def __init__(self, rt: Any, app: Any, interval: float = 0.2) -> None:
        self.rt, self.app, self.interval = rt, app, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop; it also renews the deadlines of the attempts this worker holds."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="beluga-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        from beluga.core.definitions import registry

        rt, interval = self.rt, self.interval
        queues = consumed_queues(self.app) or [rt.settings.default_queue]
        queues_ttl = max(3.0, rt.settings.lease_seconds)  # a worker that stops saying so is gone after this
        quiet = Quiet(log, "the scheduler")
        renew_every = min(1.0, rt.settings.lease_seconds / 3)
        nets_every = safety_interval(rt.settings.lease_seconds, interval)
        last_beat = last_nets = 0.0
        calm_until = 0.0
        announce = True  # this worker's workflow and activity names, again after each outage
        while not self._stop.is_set():
            try:
                now = rt.fleet.clock.now()  # the history Redis's clock (one TIME every few seconds)
                if now - last_beat > renew_every:
                    rt.fleet.hold(held_attempts())
                    rt.announce()  # this worker is alive, with its code (see roster)
                    rt.fleet.announce_queues(queues, queues_ttl)
                    last_beat = now
                if announce:
                    rt.fleet.publish_names(sorted(registry.workflows), sorted(registry.activities))
                    announce = False
                nets = now - last_nets >= nets_every
                busy = tick(rt, now, reclaim=time.monotonic() >= calm_until, safety_nets=nets)
                if nets:
                    last_nets = now
                quiet.recovered()
            except Exception as exc:
                quiet.error("scheduler round failed; retrying", exc=exc)
                calm_until = time.monotonic() + RECOVERY_GRACE
                last_beat = last_nets = 0.0  # renew first thing once Redis answers
                announce = True
                busy = 0
            self._stop.wait(0.01 if busy else interval)
