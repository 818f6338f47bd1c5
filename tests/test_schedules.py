"""`ScheduleService` (beluga/schedules.py) with an injected clock, the memory schedule store and recorded runs:
of several workers firing at once one decides each tick; a worker that dies between deciding and starting
loses nothing (another does it after the grace) and doubles nothing (the start is idempotent); an action that
cannot succeed is recorded and dropped."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from beluga.core import schedules as sc
from beluga.core.errors import ConfigurationError
from beluga.core.schedules import Action, Interval, Overlap, Schedule, SchedulePolicy, ScheduleSpec
from beluga.schedules import ScheduleService
from beluga.stores.schedule_store import MemorySchedules

T0 = 1_800_000_000.0


class Runs:
    """Runs as a store keeps them: one per workflow id; `starts` counts every start call."""

    def __init__(self) -> None:
        self.open: set[str] = set()
        self.made: list[str] = []
        self.starts = 0
        self.fail_next: Exception | None = None

    def start(self, s: Schedule, action: Action) -> None:
        self.starts += 1
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if action.workflow_id not in self.made:  # idempotent, as the executors' starts are
            self.made.append(action.workflow_id)
            self.open.add(action.workflow_id)

    def stop(self, s: Schedule, action: Action) -> None:
        self.open.discard(action.workflow_id)

    def closed(self, workflow_ids: Sequence[str]) -> set[str]:
        return {w for w in workflow_ids if w not in self.open}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[MemorySchedules, Runs, Clock]:
    return MemorySchedules(), Runs(), Clock()


def test_many_workers_one_run_per_tick(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    workers = [ScheduleService(store, runs, clock) for _ in range(5)]
    workers[0].create("s", "wf", None, ScheduleSpec(intervals=(Interval(10),)),
                      policy=SchedulePolicy(Overlap.ALLOW_ALL))
    for step in range(1, 31):
        clock.now = T0 + step
        for w in workers:
            w.fire_due()
    assert runs.made == [sc.run_id_for("s", T0 + 10 * k) for k in (1, 2, 3)]
    assert runs.starts == 3  # decided once: only the deciding worker started each


def test_a_worker_dying_between_deciding_and_starting(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    a, b = ScheduleService(store, runs, clock), ScheduleService(store, runs, clock)
    a.create("s", "wf", None, ScheduleSpec(intervals=(Interval(60),)), policy=SchedulePolicy(Overlap.ALLOW_ALL))
    clock.now = T0 + 60
    runs.fail_next = ConnectionError("killed")  # a's start never happens (it died, or Redis went away)
    assert a.fire_due() == 0
    assert [x.kind for x in store.get("s").pending] == ["start"]
    clock.now += 1
    assert b.fire_due() == 0  # within the grace: a may still be at it
    clock.now += sc.PENDING_GRACE
    assert b.fire_due() == 1
    assert runs.made == [sc.run_id_for("s", T0 + 60)] and store.get("s").pending == ()


def test_a_worker_dying_after_starting_before_noting_it(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    a = ScheduleService(store, runs, clock)
    a.create("s", "wf", None, ScheduleSpec(intervals=(Interval(60),)), policy=SchedulePolicy(Overlap.ALLOW_ALL))
    clock.now = T0 + 60
    s = store.get("s")
    decided = store.put(sc.plan(s, clock.now), s.version)  # decided ...
    runs.start(decided, decided.pending[0])  # ... and started, then the worker died
    clock.now += sc.PENDING_GRACE + 1
    assert ScheduleService(store, runs, clock).fire_due() == 1
    assert runs.made == [sc.run_id_for("s", T0 + 60)] and runs.starts == 2 and store.get("s").pending == ()


def test_an_action_that_cannot_succeed_is_recorded_and_dropped(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    w = ScheduleService(store, runs, clock)
    w.create("s", "wf", None, ScheduleSpec(intervals=(Interval(60),)))
    clock.now = T0 + 60
    runs.fail_next = ConfigurationError("no workflow registered as 'wf'")
    w.fire_due()
    s = store.get("s")
    assert s.pending == () and s.running == () and s.recent[-1].outcome == "failed"
    assert "no workflow registered" in s.recent[-1].detail


def test_terminate_other_stops_the_open_run_and_starts(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    w = ScheduleService(store, runs, clock)
    w.create("s", "wf", None, ScheduleSpec(intervals=(Interval(60),)), policy=SchedulePolicy(Overlap.TERMINATE_OTHER))
    clock.now = T0 + 60
    w.fire_due()
    clock.now = T0 + 120
    w.fire_due()
    assert runs.made == [sc.run_id_for("s", T0 + 60), sc.run_id_for("s", T0 + 120)]
    assert runs.open == {sc.run_id_for("s", T0 + 120)}
    assert w.describe("s").schedule.running == (sc.run_id_for("s", T0 + 120),)


def test_a_schedule_that_fails_does_not_stop_the_others(setup: tuple[MemorySchedules, Runs, Clock]) -> None:
    store, runs, clock = setup
    w = ScheduleService(store, runs, clock)
    for sid in ("a", "b"):
        w.create(sid, "wf", None, ScheduleSpec(intervals=(Interval(60),)))
    real_get = store.get

    def get(schedule_id: str) -> Schedule | None:
        if schedule_id == "a":
            raise ValueError("a record that does not decode")
        return real_get(schedule_id)

    store.get = get  # type: ignore[method-assign]
    clock.now = T0 + 60
    failed: list[str] = []
    assert w.fire_due(on_error=lambda sid, exc: failed.append(sid)) == 1
    assert failed == ["a"] and runs.made == [sc.run_id_for("b", T0 + 60)]
    with pytest.raises(ValueError):
        w.fire_due(clock.now + 60)
