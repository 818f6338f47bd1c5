"""The schedule calls of every executor (`executor.create_schedule(...)`, ...): one implementation, over
the `ScheduleService` an executor builds with its own store, clock and way of starting runs
(`schedule_service`); the temporal executor's hands them to Temporal's own schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from beluga.core.definitions import workflow_name
from beluga.core.retry import Duration, seconds
from beluga.core.schedules import SchedulePolicy, ScheduleSpec

if TYPE_CHECKING:
    from beluga.schedules import ScheduleDescription


class ScheduleOperations(Protocol):
    """What `schedule_service()` gives: `beluga.schedules.ScheduleService` (schedules in a store, fired by
    the executor's processes) or the temporal executor's `TemporalSchedules` (Temporal's own)."""

    def create(self, schedule_id: str, workflow_type: str, input: Any, spec: ScheduleSpec, *,
               policy: SchedulePolicy | None = ..., queue: str | None = ..., timeout: float | None = ...,
               paused: bool = ..., note: str = ...) -> ScheduleDescription: ...
    def list(self) -> list[ScheduleDescription]: ...
    def describe(self, schedule_id: str) -> ScheduleDescription: ...
    def pause(self, schedule_id: str, note: str = ...) -> ScheduleDescription: ...
    def unpause(self, schedule_id: str, note: str = ...) -> ScheduleDescription: ...
    def trigger(self, schedule_id: str) -> ScheduleDescription: ...
    def backfill(self, schedule_id: str, start: float, end: float) -> ScheduleDescription: ...
    def delete(self, schedule_id: str) -> None: ...


class Scheduling:
    """Durable schedules: each tick of `spec` starts one run of `workflow` with `input`, whatever the number
    of processes firing them (docs/schedules.md)."""

    def schedule_service(self) -> ScheduleOperations:
        """The service behind the calls below; executors that keep schedules build it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no schedules")

    def schedule_workflow_type(self, workflow: Any, input: Any) -> str:
        """The name a schedule starts (checked where the executor can), after checking `input` can be sent."""
        return workflow_name(workflow)

    def create_schedule(self, schedule_id: str, workflow: Any, input: Any = None,
                        spec: ScheduleSpec | None = None, *, policy: SchedulePolicy | None = None,
                        queue: str | None = None, timeout: Duration | None = None, paused: bool = False,
                        note: str = "") -> ScheduleDescription:
        """A new schedule; `ScheduleAlreadyExists` when the id is taken, `ScheduleError` for a bad spec. Its
        runs' workflow ids are `<schedule_id>-<tick in UTC>` (`run_id_for`)."""
        if spec is None:
            raise TypeError("create_schedule needs a spec: ScheduleSpec(cron=...) or ScheduleSpec(intervals=...)")
        name = self.schedule_workflow_type(workflow, input)
        return self.schedule_service().create(schedule_id, name, input, spec, policy=policy, queue=queue,
                                              timeout=seconds(timeout), paused=paused, note=note)

    def list_schedules(self) -> list[ScheduleDescription]:
        return self.schedule_service().list()

    def describe_schedule(self, schedule_id: str) -> ScheduleDescription:
        """The schedule, its next fire times and what became of its recent ticks; `ScheduleNotFound`."""
        return self.schedule_service().describe(schedule_id)

    def pause_schedule(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        """No tick fires until unpaused (ticks meanwhile pass); `note` says why."""
        return self.schedule_service().pause(schedule_id, note)

    def unpause_schedule(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        return self.schedule_service().unpause(schedule_id, note)

    def trigger_schedule(self, schedule_id: str) -> ScheduleDescription:
        """Fire once now, under the schedule's overlap policy, paused or not."""
        return self.schedule_service().trigger(schedule_id)

    def backfill_schedule(self, schedule_id: str, start: float, end: float) -> ScheduleDescription:
        """Start a run for every tick of the spec from `start` to `end` (epoch seconds, both included),
        side by side; a tick whose run exists starts no other."""
        return self.schedule_service().backfill(schedule_id, start, end)

    def delete_schedule(self, schedule_id: str) -> None:
        """Forget the schedule; its runs stay."""
        self.schedule_service().delete(schedule_id)
