"""The in-process executor's schedule loop: a daemon thread that fires due schedules every `interval`
seconds. Several executors (processes) on one SQLite file may each run one: the store's versioned writes
let one of them decide each tick (see beluga/schedules.py)."""

from __future__ import annotations

import threading

from beluga.logs import get_logger
from beluga.schedules import ScheduleService

log = get_logger("beluga.schedules")


class ScheduleLoop:
    def __init__(self, service: ScheduleService, interval: float = 0.5) -> None:
        self.service, self.interval = service, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="beluga-schedules", daemon=True)

    def start(self) -> ScheduleLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _failed(self, schedule_id: str, exc: Exception) -> None:
        log.warning("schedule %s could not fire (%s); trying again in %gs", schedule_id, exc, self.interval)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.service.fire_due(on_error=self._failed)
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the next round tries again
                log.warning("firing due schedules failed: %s", exc)
                busy = 0
            self._stop.wait(0.01 if busy else self.interval)
