"""Beluga's schedules as Temporal's own (`temporalio.client` schedules): the server fires them, so the
temporal executor keeps nothing itself. The spec, policy and state map one to one (cron expressions,
intervals with offsets, time zone, jitter, start and end; the five overlap policies; catch-up window; pause
with a note); trigger and backfill are Temporal's. Temporal names each run `<schedule id>-<tick in UTC>`,
the same id Beluga's own schedules give (`run_id_for`).

Temporal turns cron expressions into calendars when it stores them, so the spec as given is kept in the
schedule's memo (`beluga`) and `describe_schedule` shows it from there."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio import client as tc

from beluga import codec
from beluga.core import schedules as sc
from beluga.core.schedules import Fired, Overlap, Schedule
from beluga.schedules import ScheduleDescription

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
