"""`async def` activities in a fleet worker: each process runs them on one event loop, up to
`BELUGA_ASYNC_CONCURRENCY` attempts in flight, on any pool (prefork: a loop per pool process; threads and
solo: one for the worker).

The `beluga.activity` task of an async attempt waits for room on the loop (so that a full loop leaves the
rest to the broker's prefetch), claims the attempt as any task does, hands it to the loop and returns,
which acknowledges the message. From then on the process holds the attempt as it holds an eager one: its
deadline is renewed from here (`EagerHolds`; an attempt that promised heartbeats keeps it by heartbeating),
so that if the process dies the scheduler reclaims the attempt within the lease (WorkerLost) and
dispatches it again, as for any lost attempt. When the coroutine ends, a reporting thread reports it
through the same path as a plain attempt (`report_attempt`: the coordinator runs right there; a run's
reports always on the same thread, which keeps the run live between them), and the
run's next attempt, if it is an async one this process runs, starts eagerly on the loop.

The loop's thread never waits on Redis: heartbeats are recorded from a thread of their own (the latest
details of each attempt, in order), reports from a small pool. The coroutine is cancelled at the attempt's
timeout (it then fails with the same `TimeoutError` as a plain attempt) and, checked about once a second
for every attempt in flight, when its result can no longer count: its run closed (cancelled, terminated,
timed out) or moved on, or the attempt was reclaimed (its heartbeat timeout passed). Such an attempt is
not reported: its report would be ignored."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from beluga.activity import ActivityInfo
from beluga.activity_loop import ActivityLoop, AttemptCancelled
from beluga.celery import observe, outcome
from beluga.celery.attempts import heartbeat_recorder, report_attempt, reporting
from beluga.celery.outages import TRANSIENT, Quiet
from beluga.core.definitions import effective_option
from beluga.core.failure import attempt_timed_out
from beluga.core.limits import Holder
from beluga.logs import get_logger

Handed = tuple[Any, float, "str | None"]  # an attempt's span, start and queue (see `observe.hand_off`)

if TYPE_CHECKING:
    from beluga.celery.eager import EagerSlot
    from beluga.celery.task_events import EagerTaskEvents
    from beluga.celery.worker import FleetWorker

log = get_logger("beluga.tasks")
watching = Quiet(log, "checking that async attempts still count")
WATCH_SECONDS = 1.0   # how often the attempts in flight are checked (their run closed: cancelled)
REPORTERS = 4         # threads that report the ended attempts of one process


class AsyncAttempts:
    """The async attempts of one worker process (see the module). Built with the worker in its main
    process; a forked pool process makes its own loop and threads on first use."""

    def __init__(self, rt: FleetWorker) -> None:
        self.rt = rt
        self.loop = ActivityLoop(rt.settings.async_concurrency)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._reporters: list[ThreadPoolExecutor] = []
        self._beats: ThreadPoolExecutor | None = None
        self._pending_beats: dict[tuple[str, int, int], Any] = {}
        self.running: dict[tuple[str, int, int], str] = {}   # attempt -> its run id
        self._stale: set[tuple[str, int, int]] = set()       # cancelled because they no longer count

    def drain(self) -> None:
        """A warm shutdown: wait until the attempts in flight in this process have ended and been reported,
        as Celery lets running tasks finish (their tasks ended when they were handed to the loop)."""
        if self._pid != os.getpid() or not self.running:
            return
        log.info("warm shutdown: waiting for %d async activity attempts in flight to end", len(self.running))
        while self.running:
            time.sleep(0.05)

    def wait_for_room(self) -> None:
        """Wait until the loop takes one more attempt (the caller then `start`s it or `release`s)."""
        self.loop.acquire()

    def release(self) -> None:
        self.loop.release()

    def start(self, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int, input: Any,
              options: dict[str, Any], details: Any, heartbeat_timeout: float | None, *, celery_retries: bool,
              events: EagerTaskEvents | None = None, observed: Handed | None = None, eager_used: int = 0) -> None:
        """Run a claimed (or eagerly dispatched) attempt on the loop, in room taken by `wait_for_room`
        (given back should it fail to start). `events`: an eager attempt's task events, told how it ended;
        `observed`: its span and metrics (`observe.hand_off`), closed as it ends; `eager_used`: the eager
        attempts of its run in a row before it (see `EagerSlot`), which its report's slot goes on from."""
        key = (workflow_id, seq, attempt)
        try:
            self._own_process()
            self.running[key] = run_id
            if not heartbeat_timeout:  # no message holds it any more: renewed here (heartbeats renew the rest)
                self.rt.eager_holds.add(key)
            info = ActivityInfo(workflow_id, run_id, defn.name, seq, attempt, details,
                                _beat=partial(self._beat, key, heartbeat_timeout))
            timeout = effective_option(options, defn, "timeout")
            call = (partial(self._gated, defn, input, Holder(workflow_id, run_id, seq, attempt))
                    if defn.limit is not None else partial(defn.call, input))
            self.loop.start(key, info, call,
                            partial(self._ended, defn, run_id, input, options, heartbeat_timeout, celery_retries,
                                    events, observed, eager_used, key),
                            timeout, lambda: TimeoutError(attempt_timed_out(defn.name, attempt, timeout)["message"]))
        except BaseException:  # not started: its deadline lapses and the scheduler dispatches it again
            self.running.pop(key, None)
            self.rt.eager_holds.discard(key)
            self.loop.release()
            raise

    # --- on the loop's thread: nothing here waits ---------------------------------------------------------
    async def _gated(self, defn: Any, input: Any, holder: Holder) -> Any:
        """A rate-limited activity's coroutine behind the rate's start gate (start_gate.lua, as a plain
        attempt's, see `run_attempt`): the gate is asked off the loop's thread and its wait slept on the
        loop, holding no thread. Redis away skips the gate, as for a plain attempt."""
        permits = self.rt.coordinator.permits
        while True:
            try:
                wait = await asyncio.to_thread(permits.gate_wait, defn.name, input, holder)
            except TRANSIENT as exc:
                log.warning("could not check the rate limit of %s before attempt %s of %s seq %s: %s",
                            defn.name, holder.attempt, holder.workflow_id, holder.seq, exc)
                break
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        return await defn.call(input)

    def _beat(self, key: tuple[str, int, int], heartbeat_timeout: float | None, details: Any) -> None:
        self.rt.check(details)
        with self._lock:
            queued = key in self._pending_beats
            self._pending_beats[key] = details
        if not queued:
            assert self._beats is not None
            self._beats.submit(self._record_beat, key, heartbeat_timeout)

    def _ended(self, defn: Any, run_id: str, input: Any, options: dict[str, Any], heartbeat_timeout: float | None,
               celery_retries: bool, events: EagerTaskEvents | None, observed: Handed | None, eager_used: int,
               key: tuple[str, int, int], ok: bool, value: Any) -> None:
        # one run's reports always on one thread, which keeps the run live between them (see Coordinator.cache)
        reporter = self._reporters[zlib.crc32(key[0].encode()) % len(self._reporters)]
        reporter.submit(self._report, defn, run_id, input, options, heartbeat_timeout, celery_retries, events,
                        observed, eager_used, key, ok, value)

    # --- on the heartbeat and reporting threads --------------------------------------------------------
    def _record_beat(self, key: tuple[str, int, int], heartbeat_timeout: float | None) -> None:
        with self._lock:
            details = self._pending_beats.pop(key, None)
        if key in self.running:
            heartbeat_recorder(self.rt, key[0], key[1], key[2], heartbeat_timeout)(details)

    def _report(self, defn: Any, run_id: str, input: Any, options: dict[str, Any], heartbeat_timeout: float | None,
                celery_retries: bool, events: EagerTaskEvents | None, observed: Handed | None, eager_used: int,
                key: tuple[str, int, int], ok: bool, value: Any) -> None:
        from beluga.celery.eager import EagerSlot, observe_eager_end, run_eager_slot

        workflow_id, seq, attempt = key
        rt = self.rt
        reported = None
        slot: EagerSlot | None = None
        try:
            if key in self._stale:  # its run closed or it was reclaimed: a report would be ignored
                log.info("async attempt %s of %s seq %s was cancelled: %s", attempt, workflow_id, seq, value)
                return
            # the run's next attempt may start right here, if it is an async one (a plain one would hold
            # this reporting thread: it goes through the broker), within the eager budget of its chain
            slot = EagerSlot(rt.settings.eager_activities, async_only=True) \
                if rt.settings.eager_activities > 0 else None
            if slot is not None:
                slot.used = eager_used
            rt.slot = slot
            reported = report_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options, None,
                                      heartbeat_timeout, heartbeat_timeout is not None, celery_retries,
                                      ended=(ok, value))
        except Exception as exc:  # noqa: BLE001 - never lose the reporting thread; the lease covers it
            reporting.error("could not report async attempt %s of %s seq %s", attempt, workflow_id, seq, exc=exc)
        finally:
            rt.eager_holds.discard(key)
            message = reported[0] if reported is not None else {}
            state = "SUCCESS" if message.get("ok") else "RETRY" if reported and reported[2] is not None else "FAILURE"
            observe.handed_ended(observed, defn.name, state, None if ok else value)
            if events is not None:
                observe_eager_end(events, defn.name, reported)
            else:
                outcome.take_failure()  # no task settles it: do not leave it in this thread
            try:
                if slot is not None:  # the next attempt it left, started before this one stops counting as running
                    run_eager_slot(rt, slot)
            finally:
                self._stale.discard(key)
                self.running.pop(key, None)

    def _watch_forever(self, pid: int) -> None:
        """Cancel the coroutines of attempts that no longer count (see the module)."""
        while os.getpid() == pid:
            time.sleep(WATCH_SECONDS)
            attempts = [(wid, run_id, seq, attempt) for (wid, seq, attempt), run_id in self.running.copy().items()]
            if not attempts:
                continue
            try:
                current = self.rt.fleet.still_current(attempts)
                watching.recovered()
            except Exception as exc:  # noqa: BLE001 - Redis away: looked at again next round
                watching.error("could not check the async attempts in flight", exc=exc)
                continue
            for (wid, _, seq, attempt), still in zip(attempts, current, strict=True):
                key = (wid, seq, attempt)
                if not still and key in self.running:
                    self._stale.add(key)
                    if key not in self.running:  # it was reported meanwhile
                        self._stale.discard(key)
                        continue
                    self.loop.cancel(key, AttemptCancelled(
                        f"attempt {attempt} of {wid} seq {seq} no longer counts (its run closed, or it was "
                        "reclaimed): its coroutine was cancelled"))

    def _own_process(self) -> None:
        """This process's reporting and heartbeat threads and watcher (a forked pool process starts its own)."""
        with self._lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            self._reporters = [ThreadPoolExecutor(1, thread_name_prefix=f"beluga-async-report-{i}")
                               for i in range(REPORTERS)]
            self._beats = ThreadPoolExecutor(1, thread_name_prefix="beluga-async-beats")
            self._pending_beats, self.running, self._stale = {}, {}, set()
            threading.Thread(target=self._watch_forever, args=(pid,), name="beluga-async-watch", daemon=True).start()
            self._pid = pid
