"""A small loop inside every worker's main process: moves due durable timers into run inboxes, wakes
those runs, and reclaims activity attempts whose worker died (their lease stopped being renewed).

Several workers run it at once safely: each due timer and each expired lease is claimed atomically."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from beluga.celery import messages
from beluga.core.failure import failure as failure_record
from beluga.core.steps import ActivityOutcome
from beluga.stores.redis import on_primary

log = logging.getLogger("beluga.scheduler")
_stop = threading.Event()
_thread: threading.Thread | None = None


def tick(rt: Any, now: float, queued: Any = None) -> int:
    """One round; returns how much it did. Separate from the loop so tests can step it.

    `queued` is given with a Redis broker, which keeps a dead worker's messages unacknowledged for its
    visibility timeout: attempts taken by a worker that died before starting them, or never taken at
    all, are then found here. An AMQP broker hands such messages to another worker by itself."""
    fleet = rt.fleet
    done = fleet.drain_timers(now)
    lost = fleet.expired_attempts(now)
    if queued is not None:
        lost += fleet.orphaned_attempts() + fleet.undelivered(now, queued)
    for workflow_id, seq, attempt, info in lost:
        heartbeat_timeout = info.get("heartbeat_timeout")
        if heartbeat_timeout:
            failure = failure_record("TimeoutError", f"attempt {attempt}: no heartbeat for {heartbeat_timeout:g}s")
        else:
            failure = failure_record("WorkerLost", f"attempt {attempt} lost its worker (no lease renewal for "
                                     f"{rt.settings.lease_seconds:g}s)")
        message = messages.encode(ActivityOutcome(seq, attempt, False, failure, decided=False), info.get("run"))
        on_primary(fleet.push, workflow_id, message)  # claimed above: a lagging replica must not drop it
        fleet.retire(workflow_id, seq, attempt)
        rt.wake(workflow_id, None)
        done += 1
    for workflow_id in fleet.take_wakes() + fleet.sweep(now):
        rt.wake(workflow_id, None)
        done += 1
    return done


def _loop(app: Any, worker: str, interval: float) -> None:
    from beluga.celery.tasks import queued, runtime

    rt = runtime(app)
    waiting = queued(rt, sorted(app.amqp.queues.keys()) or [rt.settings.default_queue]) \
        if rt.settings.broker_is_redis else None
    last_beat = 0.0
    while not _stop.is_set():
        try:
            now = time.time()
            if now - last_beat > 1.0:
                rt.fleet.alive(worker)
                last_beat = now
            busy = tick(rt, now, waiting)
        except Exception:
            log.exception("scheduler round failed; retrying")
            busy = 0
        _stop.wait(0.01 if busy else interval)


def start_scheduler(app: Any, worker: str, interval: float = 0.2) -> None:
    """Start the loop; it also keeps the worker's liveness key fresh."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(app, worker, interval), name="beluga-scheduler", daemon=True)
    _thread.start()


def stop_scheduler() -> None:
    _stop.set()
