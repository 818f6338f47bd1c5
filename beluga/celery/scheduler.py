"""A small loop inside every worker's main process: moves due durable timers into run inboxes, wakes
those runs, and reclaims activity attempts whose worker died (their lease stopped being renewed).

Several workers run it at once safely: each due timer and each expired lease is claimed atomically."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("beluga.scheduler")
_stop = threading.Event()
_thread: threading.Thread | None = None


def tick(rt: Any, now: float) -> int:
    """One round; returns how much it did. Separate from the loop so tests can step it."""
    fleet = rt.fleet
    done = fleet.drain_timers(now)
    for workflow_id, seq, attempt, info in fleet.expired_attempts(now):
        failure = {"type": "WorkerLost", "message": f"attempt {attempt} lost its worker (no heartbeat "
                   f"or lease renewal for {rt.settings.lease_seconds:g}s)", "traceback": "",
                   "non_retryable": False}
        fleet.push(workflow_id, {"k": "activity", "run": info.get("run"), "seq": seq, "attempt": attempt,
                                 "ok": False, "payload": failure})
        fleet.redis.hdel(rt.store.key(workflow_id, "attempts"), str(seq))
        rt.wake(workflow_id, None)
        done += 1
    for workflow_id in fleet.take_wakes() + fleet.sweep(now):
        rt.wake(workflow_id, None)
        done += 1
    return done


def _loop(app: Any, interval: float) -> None:
    from beluga.celery.tasks import runtime

    rt = runtime(app)
    while not _stop.is_set():
        try:
            busy = tick(rt, time.time())
        except Exception:
            log.exception("scheduler round failed; retrying")
            busy = 0
        _stop.wait(0.01 if busy else interval)


def start_scheduler(app: Any, interval: float = 0.2) -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(app, interval), name="beluga-scheduler", daemon=True)
    _thread.start()


def stop_scheduler() -> None:
    _stop.set()
