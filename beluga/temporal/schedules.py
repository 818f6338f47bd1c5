"""Beluga's schedules as Temporal's own (`temporalio.client` schedules): the server fires them, so the
temporal executor keeps nothing itself. The spec, policy and state map one to one (cron expressions,
intervals with offsets, time zone, jitter, start and end; the five overlap policies; catch-up window; pause
with a note); trigger and backfill are Temporal's. Temporal names each run `<schedule id>-<tick in UTC>`,
the same id Beluga's own schedules give (`run_id_for`).

Temporal turns cron expressions into calendars when it stores them, so the spec as given is kept in the
schedule's memo (`beluga`) and `describe_schedule` shows it from there."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from temporalio import client as tc

from beluga import codec
from beluga.core import schedules as sc
from beluga.core.errors import ScheduleAlreadyExists, ScheduleNotFound
from beluga.core.names import check_name
from beluga.core.schedules import Fired, Overlap, Schedule, SchedulePolicy, ScheduleSpec
from beluga.schedules import ScheduleDescription, identity_of

T = TypeVar("T")
MEMO = "beluga"
_OVERLAP = {Overlap.SKIP: tc.ScheduleOverlapPolicy.SKIP, Overlap.BUFFER_ONE: tc.ScheduleOverlapPolicy.BUFFER_ONE,
            Overlap.ALLOW_ALL: tc.ScheduleOverlapPolicy.ALLOW_ALL,
            Overlap.CANCEL_OTHER: tc.ScheduleOverlapPolicy.CANCEL_OTHER,
            Overlap.TERMINATE_OTHER: tc.ScheduleOverlapPolicy.TERMINATE_OTHER}


def at(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


def span(t: float | None) -> timedelta | None:
    return None if not t else timedelta(seconds=t)


def temporal_schedule(s: Schedule, task_queue: str, memo: dict[str, Any] | None) -> tc.Schedule:
    """`s` as Temporal's schedule: start `s.workflow_type` with `s.input` under the workflow id `s.id`
    (Temporal adds `-<tick>`)."""
    spec = s.spec
    return tc.Schedule(
        action=tc.ScheduleActionStartWorkflow(
            s.workflow_type, codec.encode(s.input), id=s.id, task_queue=s.queue or task_queue,
            execution_timeout=span(s.timeout), memo=memo),
        spec=tc.ScheduleSpec(
            cron_expressions=list(spec.cron),
            intervals=[tc.ScheduleIntervalSpec(every=timedelta(seconds=i.every), offset=span(i.offset))
                       for i in spec.intervals],
            time_zone_name=spec.timezone, jitter=span(spec.jitter), start_at=at(spec.start_at), end_at=at(spec.end_at)),
        policy=tc.SchedulePolicy(overlap=overlap(s.policy.overlap),
                                 catchup_window=timedelta(seconds=max(10.0, s.policy.catchup_window))),
        state=tc.ScheduleState(paused=s.paused, note=s.note or None))


def overlap(policy: Overlap) -> tc.ScheduleOverlapPolicy:
    return _OVERLAP[policy]


def memo_of(s: Schedule) -> dict[str, str]:
    """The schedule as given, kept in Temporal's memo (a string: memos are JSON)."""
    return {MEMO: base64.b64encode(codec.encode(sc.to_dict(s))).decode()}


def described(d: tc.ScheduleDescription, memo: Mapping[str, Any]) -> ScheduleDescription:
    """Temporal's description in Beluga's terms: the spec as given (from the memo), Temporal's state
    (paused, note), counts, recent actions and next times."""
    kept = memo.get(MEMO)
    if kept is None:
        raise ValueError(f"schedule {d.id!r} was not made by Beluga (no {MEMO!r} memo)")
    s = sc.from_dict(codec.decode(base64.b64decode(kept)))
    info, state = d.info, d.schedule.state
    recent = tuple(Fired(r.scheduled_at.timestamp(), r.started_at.timestamp(), "started",
                         getattr(r.action, "workflow_id", None), "") for r in info.recent_actions)
    running = tuple(getattr(a, "workflow_id", "") for a in info.running_actions)
    s = Schedule(s.id, s.workflow_type, s.input, s.spec, s.policy, s.queue, s.timeout, state.paused,
                 state.note or "", info.next_action_times[0].timestamp() if info.next_action_times else None,
                 running=running, recent=recent, started=info.num_actions,
                 missed=info.num_actions_missed_catchup_window, skipped=info.num_actions_skipped_overlap,
                 created_at=info.created_at.timestamp(),
                 updated_at=(info.last_updated_at or info.created_at).timestamp())
    return ScheduleDescription(s, tuple(t.timestamp() for t in info.next_action_times[:5]))


class TemporalSchedules:
    """The temporal executor's `schedule_service()`: the calls of `ScheduleService`, on Temporal's schedules.
    `run` runs a coroutine on the executor's event loop."""

    def __init__(self, client: tc.Client, run: Callable[[Coroutine[Any, Any, Any]], Any], task_queue: str) -> None:
        self.client, self._run, self.task_queue = client, run, task_queue

    def create(self, schedule_id: str, workflow_type: str, input: Any, spec: ScheduleSpec, *,
               policy: SchedulePolicy | None = None, queue: str | None = None, timeout: float | None = None,
               paused: bool = False, note: str = "") -> ScheduleDescription:
        from beluga.executors.base import WorkflowOptions
        from beluga.temporal.workflow import run_memo

        check_name(schedule_id, "schedule id")
        s = sc.new_schedule(schedule_id, workflow_type, input, spec, time.time(), policy=policy, queue=queue,
                            timeout=timeout, paused=paused, note=note)
        runs_memo = run_memo(WorkflowOptions(identity=identity_of(schedule_id)))
        try:
            self._run(self.client.create_schedule(schedule_id, temporal_schedule(s, self.task_queue, runs_memo),
                                                  memo=memo_of(s)))
        except tc.ScheduleAlreadyRunningError:
            raise ScheduleAlreadyExists(f"schedule {schedule_id!r} already exists") from None
        return self.describe(schedule_id)

    def list(self) -> list[ScheduleDescription]:
        async def ids() -> list[str]:
            return [d.id async for d in await self.client.list_schedules()]

        out = []
        for sid in self._run(ids()):
            with contextlib.suppress(ScheduleNotFound, ValueError):  # deleted meanwhile; not made by Beluga
                out.append(self.describe(sid))
        return sorted(out, key=lambda d: d.id)

    def describe(self, schedule_id: str) -> ScheduleDescription:
        async def read(h: tc.ScheduleHandle) -> tuple[tc.ScheduleDescription, Mapping[str, Any]]:
            d = await h.describe()
            return d, await d.memo()

        return described(*self._on(schedule_id, read))

    def pause(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        self._on(schedule_id, lambda h: h.pause(note=note or "paused"))
        return self.describe(schedule_id)

    def unpause(self, schedule_id: str, note: str = "") -> ScheduleDescription:
        self._on(schedule_id, lambda h: h.unpause(note=note or "unpaused"))
        return self.describe(schedule_id)

    def trigger(self, schedule_id: str) -> ScheduleDescription:
        self._on(schedule_id, lambda h: h.trigger())
        return self.describe(schedule_id)

    def backfill(self, schedule_id: str, start: float, end: float) -> ScheduleDescription:
        backfill = tc.ScheduleBackfill(at(start), at(end), overlap=overlap(Overlap.ALLOW_ALL))
        self._on(schedule_id, lambda h: h.backfill(backfill))
        return self.describe(schedule_id)

    def delete(self, schedule_id: str) -> None:
        self._on(schedule_id, lambda h: h.delete())

    def _on(self, schedule_id: str, call: Callable[[tc.ScheduleHandle], Coroutine[Any, Any, T]]) -> T:
        from temporalio.service import RPCError, RPCStatusCode

        try:
            return self._run(call(self.client.get_schedule_handle(schedule_id)))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ScheduleNotFound(f"no schedule with id {schedule_id!r}") from None
            raise
