"""The in-process engine's activity pool: daemon threads that run attempts, and an event loop that runs
`async def` ones, many at once; each posts its outcome back to the coordinator's inbox. Attempts waiting
for a thread or for room on the loop are taken by priority (core/priority.py), in order among equals."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from beluga import metrics, propagation
from beluga.activity import ActivityInfo, run_with_info
from beluga.activity_loop import ActivityLoop
from beluga.core.definitions import Registry
from beluga.core.failure import to_failure
from beluga.core.priority import DEFAULT, LOWEST
from beluga.hooks import Hooks
from beluga.inprocess.records import AttemptFinished, Msg


class _ByPriority:
    """A queue of attempts taken by priority (1 first), in order among equals; None (stop) after them all."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, tuple[Any, ...] | None]] = queue.PriorityQueue()
        self._order = itertools.count()

    def put(self, item: tuple[Any, ...] | None, priority: int = DEFAULT) -> None:
        self._queue.put((LOWEST + 1 if item is None else priority, next(self._order), item))

    def get(self) -> tuple[Any, ...] | None:
        return self._queue.get()[2]


class ActivityPool:
    """`size` threads run plain activities, one attempt each; `async def` activities run on one event loop
    (see beluga/activity_loop.py), `async_limit` attempts in flight at once, the rest waiting their turn
    in order. Either way an attempt's outcome is posted to the coordinator's inbox."""

    def __init__(self, size: int, registry: Registry, hooks: Callable[[], Hooks], post: Callable[[Msg], None],
                 check_payload: Callable[[Any], Any], clock: Callable[[], float],
                 gate: Callable[[str, Any], float] | None = None, async_limit: int = 100) -> None:
        self.registry = registry
        self._gate = gate  # right before a limited activity starts: the seconds till its rate allows it, or 0
        self._hooks = hooks
        self._post = post
        self._check = check_payload
        self._clock = clock
        self.beats: dict[tuple[str, int, int], tuple[float, Any]] = {}
        self._outstanding = 0            # submitted attempts whose outcome is not yet posted
        self._count_lock = threading.Lock()
        self._work = _ByPriority()
        self._threads = [threading.Thread(target=self._run, name=f"beluga-activity-{i}", daemon=True)
                         for i in range(size)]
        self.loop = ActivityLoop(async_limit)
        # async attempts wait here for room on the loop, so the coordinator never waits for it
        self._admit = _ByPriority()
        self._admitter = threading.Thread(target=self._admit_forever, name="beluga-async-admit", daemon=True)

    def start(self) -> None:
        metrics.slots(len(self._threads))
        for t in self._threads:
            t.start()
        self._admitter.start()

    def stop(self) -> None:
        metrics.slots(-len(self._threads))
        for _ in self._threads:
            self._work.put(None)
        self._admit.put(None)

    def submit(self, item: tuple[Any, ...], priority: int = DEFAULT) -> None:
        with self._count_lock:
            self._outstanding += 1
        defn = self.registry.activities.get(item[4])
        (self._admit if defn is not None and defn.is_async else self._work).put(item, priority)

    def cancel(self, run_id: str, reason: BaseException, seq: int | None = None) -> None:
        """Cancel the `async def` attempts of run `run_id` (of its activity `seq` only, when given) still
        running: their outcome no longer counts (it timed out, or the run closed). A plain activity's
        thread cannot be stopped: it runs on, and its outcome is dropped as late."""
        for key in self.loop.in_flight():
            if key[0] == run_id and (seq is None or key[1] == seq):
                self.loop.cancel(key, reason)

    def idle(self) -> bool:
        """No attempt queued or running: every outcome is already in the coordinator's inbox."""
        return self._outstanding == 0

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            began, span = self._began(item, threaded=True)
            ok, payload, error = True, None, None
            try:
                defn = self.registry.activity(item[4])
                self._hooks().emit("on_activity_start", item[0], item[5])
                payload = run_with_info(self._info(item), partial(self._call, defn, item[5]))
            except BaseException as exc:
                ok, error = False, exc
            self._ended(item, began, span, ok, payload if ok else error)

    def _admit_forever(self) -> None:
        while True:
            item = self._admit.get()
            if item is None:
                return
            self.loop.acquire()
            began, span = self._began(item, threaded=False)
            try:
                defn = self.registry.activity(item[4])
                self._hooks().emit("on_activity_start", item[0], item[5])
            except BaseException as exc:
                self.loop.release()
                propagation.detach(span)
                self._ended(item, began, span, False, exc, threaded=False)
                continue
            call = (partial(self._gated, defn, item[5]) if self._gate is not None and defn.limit is not None
                    else partial(defn.call, item[5]))
            self.loop.start((item[1], item[2], item[3]), self._info(item), call,
                            partial(self._ended, item, began, span, threaded=False))
            propagation.detach(span)  # current in the coroutine, which copied this thread's context

    def _info(self, item: tuple[Any, ...]) -> ActivityInfo:
        workflow_id, run_id, seq, attempt, name, _, details, *_ = item
        return ActivityInfo(workflow_id, run_id, name, seq, attempt, details,
                            _beat=partial(self._beat, (run_id, seq, attempt)))

    def _began(self, item: tuple[Any, ...], threaded: bool) -> tuple[float, Any]:
        """`threaded`: one of the pool's threads runs it (it takes a slot), not the loop."""
        workflow_id, run_id, seq, attempt, name, _, _, headers, queued_at, queue = item
        if threaded:
            metrics.slot_taken()
        metrics.activity_started(name, queue, queued_at, time.time())
        return time.perf_counter(), propagation.start_activity(workflow_id, run_id, name, seq, attempt, headers)

    def _ended(self, item: tuple[Any, ...], began: float, span: Any, ok: bool, value: Any, threaded: bool = True
               ) -> None:
        """An attempt ended (`value`: its result, or its exception): its outcome goes to the coordinator
        (on an async attempt's loop thread too: posting never blocks). `threaded`: as for `_began` (its
        span is current in this thread; an async attempt's was current in its coroutine)."""
        workflow_id, run_id, seq, attempt, name, *_, queue = item
        error: BaseException | None = None
        if ok:
            try:
                self._check(value)
            except BaseException as exc:
                ok, error = False, exc
        else:
            error = value
        payload = value if ok else to_failure(error)  # NEVER_RETRIED errors marked non-retryable
        propagation.end(span, error, current=threaded)
        metrics.activity_finished(name, queue, "ok" if ok else "failed", time.perf_counter() - began,
                                  "" if ok else metrics.failure_type(payload))
        if threaded:
            metrics.slot_freed()
        self._post(Msg(workflow_id, run_id, AttemptFinished(seq, attempt, ok, payload)))
        with self._count_lock:  # after the post, so that idle() implies the outcome is queued
            self._outstanding -= 1

    async def _gated(self, defn: Any, input: Any) -> Any:
        """An async rate-limited activity's coroutine behind the rate's start gate, its wait slept on the loop."""
        assert self._gate is not None
        while (wait := self._gate(defn.name, input)) > 0:
            await asyncio.sleep(wait)
        return await defn.call(input)

    def _call(self, defn: Any, input: Any) -> Any:
        if self._gate is not None and defn.limit is not None:
            while (wait := self._gate(defn.name, input)) > 0:
                time.sleep(wait)
        return defn.call(input)

    def _beat(self, key: tuple[str, int, int], details: Any) -> None:
        self._check(details)
        self.beats[key] = (self._clock(), details)
