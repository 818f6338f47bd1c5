"""The in-process engine's activity pool: daemon threads that run attempts and post their outcome
back to the coordinator's inbox."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from beluga import metrics, propagation
from beluga.activity import ActivityInfo, run_with_info
from beluga.core.definitions import Registry
from beluga.core.failure import to_failure
from beluga.hooks import Hooks
from beluga.inprocess.records import AttemptFinished, Msg


class ActivityPool:
    def __init__(self, size: int, registry: Registry, hooks: Callable[[], Hooks], post: Callable[[Msg], None],
                 check_payload: Callable[[Any], Any], clock: Callable[[], float],
                 gate: Callable[[str, Any], None] | None = None) -> None:
        self.registry = registry
        self._gate = gate  # waits, right before a limited activity starts, until its rate allows the start
        self._hooks = hooks
        self._post = post
        self._check = check_payload
        self._clock = clock
        self.beats: dict[tuple[str, int, int], tuple[float, Any]] = {}
        self._outstanding = 0            # submitted attempts whose outcome is not yet posted
        self._count_lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"beluga-activity-{i}", daemon=True)
                         for i in range(size)]

    def start(self) -> None:
        metrics.slots(len(self._threads))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        metrics.slots(-len(self._threads))
        for _ in self._threads:
            self._work.put(None)

    def submit(self, item: tuple[Any, ...]) -> None:
        with self._count_lock:
            self._outstanding += 1
        self._work.put(item)

    def idle(self) -> bool:
        """No attempt queued or running: every outcome is already in the coordinator's inbox."""
        return self._outstanding == 0

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            workflow_id, run_id, seq, attempt, name, input, details, headers, queued_at, queue = item
            ok, payload = True, None
            began = time.perf_counter()
            metrics.slot_taken()
            metrics.activity_started(name, queue, queued_at, time.time())
            span = propagation.start_activity(workflow_id, run_id, name, seq, attempt, headers)
            error: BaseException | None = None
            try:
                defn = self.registry.activity(name)
                self._hooks().emit("on_activity_start", workflow_id, input)
                info = ActivityInfo(workflow_id, run_id, name, seq, attempt, details,
                                    _beat=partial(self._beat, (run_id, seq, attempt)))
                payload = run_with_info(info, partial(self._call, defn, input))
                self._check(payload)
            except BaseException as exc:
                ok, payload, error = False, to_failure(exc), exc  # NEVER_RETRIED errors marked non-retryable
            propagation.end(span, error)
            metrics.activity_finished(name, queue, "ok" if ok else "failed", time.perf_counter() - began,
                                      "" if ok else metrics.failure_type(payload))
            metrics.slot_freed()
            self._post(Msg(workflow_id, run_id, AttemptFinished(seq, attempt, ok, payload)))
            with self._count_lock:  # after the post, so that idle() implies the outcome is queued
                self._outstanding -= 1

    def _call(self, defn: Any, input: Any) -> Any:
        if self._gate is not None and defn.limit is not None:
            self._gate(defn.name, input)
        return defn.call(input)

    def _beat(self, key: tuple[str, int, int], details: Any) -> None:
        self._check(details)
        self.beats[key] = (self._clock(), details)
