"""Durable schedules, the part that does things: `ScheduleService` reads and writes schedules in a
`ScheduleStore` and does their actions through a `ScheduledRuns` (the executor's way of starting, stopping
and looking at runs). Every executor backed by a store hands its schedule calls to one of these; the fleet's
workers (beluga/celery/schedules.py) and the in-process executor's loop call `fire_due`.

How a tick fires once, through crashes (the decisions are beluga/core/schedules.py's):
1. plan: the tick becomes a pending `start` action in the record, written only if the record is still at
   the version read (`ScheduleStore.put`): of many workers, one decides it;
2. act: that worker starts the run whose workflow id the tick fixes (`<schedule id>-<tick>`), a start that
   is a no-op when a run with that id exists (the fleet: the same request id returns the same run), then
   removes the action from the record;
3. a worker that dies between 1 and 2 (or 2 and its removal) leaves the action pending: once
   `PENDING_GRACE` has passed, the next worker to win the record's version does it again: a no-op if the
   run was started, else its start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from beluga.core import schedules as sc
from beluga.core.cron import utc_text
from beluga.core.errors import (
    ConfigurationError,
    InvalidName,
    ScheduleNotFound,
    SerializationError,
    WorkflowAlreadyStarted,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.names import check_name
from beluga.core.schedules import Action, Schedule, SchedulePolicy, ScheduleSpec
from beluga.logs import get_logger
from beluga.stores.schedule_store import ScheduleStore

log = get_logger("beluga.schedules")
PERMANENT = (ConfigurationError, SerializationError, InvalidName)  # an action that fails so fails again
WRITE_TRIES = 20


class ScheduledRuns(Protocol):
    """What schedules need of an executor."""

    def start(self, s: Schedule, action: Action) -> None:
        """Start the run `action.workflow_id` of `s`, unless a run with that id exists: idempotent."""

    def stop(self, s: Schedule, action: Action) -> None:
        """Cancel or terminate (`action.kind`) the run `action.workflow_id`; a closed or unknown run is left."""

    def closed(self, workflow_ids: Sequence[str]) -> set[str]:
        """Those of `workflow_ids` whose run is closed or gone."""


@dataclass(frozen=True, slots=True)
class ScheduleDescription:
    """A schedule as `describe_schedule` and `list_schedules` show it: its record, and its next fire times
    (`recent` in the record says what became of the last ticks)."""

    schedule: Schedule
    next_times: tuple[float, ...]

    @property
    def id(self) -> str:
        return self.schedule.id


def identity_of(schedule_id: str) -> str:
    """Who a schedule's runs are started by, as their `workflow_started` event records it."""
    return f"schedule {schedule_id}"


class ScheduleService:
    def __init__(self, store: ScheduleStore, runs: ScheduledRuns, clock: Callable[[], float]) -> None:
        self.store, self.runs, self.clock = store, runs, clock

    # --- the calls behind executor.create_schedule, ... ---------------------------------------------------
    def create(self, schedule_id: str, workflow_type: str, input: Any, spec: ScheduleSpec, *,
               policy: SchedulePolicy | None = None, queue: str | None = None, timeout: float | None = None,
               paused: bool = False, note: str = "") -> ScheduleDescription:
        check_name(schedule_id, "schedule id")
        s = sc.new_schedule(schedule_id, workflow_type, input, spec, self.clock(), policy=policy, queue=queue,
                            timeout=timeout, paused=paused, note=note)
        return self._described(self.store.add(s))

    def describe(self, schedule_id: str) -> ScheduleDescription:
        return self._described(self._get(schedule_id))

    def list(self) -> list[ScheduleDescription]:
        return [self._described(s) for s in self.store.all()]

    def pause(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        return self._described(self._change(schedule_id, lambda s, now: sc.pause(s, True, note, now)))

    def unpause(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        return self._described(self._change(schedule_id, lambda s, now: sc.pause(s, False, note, now)))

    def trigger(self, schedule_id: str) -> ScheduleDescription:
        """Fire once now (under the overlap policy); the run is started before this returns."""
        def fire(s: Schedule, now: float) -> Schedule:
            return sc.trigger(s, now, self.runs.closed(s.running))

        return self._described(self._change(schedule_id, fire, act=True))

    def backfill(self, schedule_id: str, start: float, end: float) -> ScheduleDescription:
        """Start a run for each tick of the spec from `start` to `end` (epoch seconds, both included)."""
        return self._described(self._change(schedule_id, lambda s, now: sc.backfill(s, start, end, now), act=True))

    def delete(self, schedule_id: str) -> None:
        """Forget the schedule; the runs it started are left as they are."""
        if not self.store.remove(schedule_id):
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")

    # --- firing -------------------------------------------------------------------------------------------
    def fire_due(self, now: float | None = None, limit: int = 100,
                 on_error: Callable[[str, Exception], None] | None = None) -> int:
        """Plan and act on every schedule due by `now`; returns how many actions this process did. With
        `on_error`, a schedule that fails is handed to it (which may raise) and the others still fire."""
        now = self.clock() if now is None else now
        done = 0
        for sid in self.store.due(now, limit):
            try:
                done += self.fire(sid, now)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(sid, exc)
        return done

    def fire(self, schedule_id: str, now: float) -> int:
        """Plan one schedule's due ticks and do what this process decided (or took over); 0 when another
        process wrote the record first."""
        s = self.store.get(schedule_id)
        due = None if s is None else sc.due_at(s)
        if s is None or due is None or due > now:
            return 0  # gone, or another process moved it on since the due index was read
        overdue = {(a.kind, a.workflow_id) for a in s.pending if a.decided_at + sc.PENDING_GRACE <= now}
        planned = sc.plan(s, now, self.runs.closed(s.running) if s.running else ())
        planned = replace(planned, updated_at=now, pending=tuple(
            replace(a, decided_at=now) if (a.kind, a.workflow_id) in overdue else a for a in planned.pending))
        written = self.store.put(planned, s.version)
        if written is None:
            return 0  # another worker decided these ticks
        before = {(a.kind, a.workflow_id) for a in s.pending} - overdue
        return self._act(written, [a for a in written.pending if (a.kind, a.workflow_id) not in before])

    # --- inside -------------------------------------------------------------------------------------------
    def _get(self, schedule_id: str) -> Schedule:
        s = self.store.get(schedule_id)
        if s is None:
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
        return s

    def _described(self, s: Schedule) -> ScheduleDescription:
        """With `running` as it is now (the record's is as of its last tick)."""
        closed = self.runs.closed(s.running) if s.running else set()
        s = replace(s, running=tuple(w for w in s.running if w not in closed))
        return ScheduleDescription(s, tuple(sc.next_times(s)))

    def _change(self, schedule_id: str, change: Callable[[Schedule, float], Schedule], act: bool = False) -> Schedule:
        """Apply `change` to the record, again on a fresh read while another writer comes first; with `act`,
        do the actions it added."""
        for _ in range(WRITE_TRIES):
            s = self._get(schedule_id)
            now = self.clock()
            written = self.store.put(replace(change(s, now), updated_at=now), s.version)
            if written is not None:
                if act:
                    known = {(a.kind, a.workflow_id) for a in s.pending}
                    self._act(written, [a for a in written.pending if (a.kind, a.workflow_id) not in known])
                    return self.store.get(schedule_id) or written
                return written
        raise ConfigurationError(f"schedule {schedule_id!r} changed under {WRITE_TRIES} tries in a row; try again")

    def _act(self, s: Schedule, actions: list[Action]) -> int:
        """Do `actions` (stops before starts, as decided), then take them off the record. One that fails for
        a reason that will not pass is recorded and dropped; any other failure leaves it pending, for
        another try once its grace has passed."""
        done: list[Action] = []
        failed: list[tuple[Action, str]] = []
        for action in actions:
            try:
                if action.kind == "start":
                    self.runs.start(s, action)
                    log.info("schedule %s started %s (%s tick %s)", s.id, action.workflow_id, action.source,
                             utc_text(action.tick))
                else:
                    self.runs.stop(s, action)
                done.append(action)
            except (WorkflowAlreadyStarted, WorkflowNotRunning, WorkflowNotFound):
                done.append(action)  # a run with this id is open already; or the run to stop has closed
            except PERMANENT as exc:
                log.error("schedule %s: %s of %s failed: %s", s.id, action.kind, action.workflow_id, exc)
                failed.append((action, str(exc)))
            except Exception as exc:  # noqa: BLE001 - left pending: done again after its grace
                log.warning("schedule %s: %s of %s failed (%s); it is tried again in %gs", s.id, action.kind,
                            action.workflow_id, exc, sc.PENDING_GRACE)
        if done or failed:
            self._settle(s.id, done, failed)
        return len(done)

    def _settle(self, schedule_id: str, done: list[Action], failed: list[tuple[Action, str]]) -> None:
        for _ in range(WRITE_TRIES):
            s = self.store.get(schedule_id)
            if s is None:
                return
            if self.store.put(sc.without(s, done, failed, self.clock()), s.version) is not None:
                return
        # still pending: whoever takes them over next finds them done (a start is a no-op then)


class ExecutorRuns:
    """`ScheduledRuns` through an executor's public calls and its store (the in-process executor's)."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    def start(self, s: Schedule, action: Action) -> None:
        from beluga.executors.base import WorkflowOptions

        if self.executor.store.load_summary(action.workflow_id) is not None:
            return  # started already (this tick's run; or another run with its id, which it does not replace)
        self.executor.execute(s.workflow_type, WorkflowOptions(
            id=action.workflow_id, input=s.input, queue=s.queue, timeout=s.timeout,
            request_id=f"schedule:{action.workflow_id}", identity=identity_of(s.id)))

    def stop(self, s: Schedule, action: Action) -> None:
        who = identity_of(s.id)
        if action.kind == "cancel":
            self.executor.cancel(action.workflow_id, identity=who)
        else:
            self.executor.terminate(action.workflow_id, "a newer run of its schedule started", identity=who)

    def closed(self, workflow_ids: Sequence[str]) -> set[str]:
        out = set()
        for wid in workflow_ids:
            state = self.executor.store.load_summary(wid)
            if state is None or not state.status.is_open:
                out.add(wid)
        return out
