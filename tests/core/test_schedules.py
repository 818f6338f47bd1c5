"""The pure core of schedules (beluga/core/cron.py, schedules.py): cron matching in time zones, interval
offsets, deterministic jitter, catch-up, overlap policies, trigger and backfill, all with given clocks."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from beluga import codec
from beluga.core import schedules as sc
from beluga.core.cron import CronError, next_after, parse, utc_text
from beluga.core.schedules import Interval, Overlap, SchedulePolicy, ScheduleSpec


def at(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def ticks(spec: ScheduleSpec, after: float, n: int) -> list[str]:
    out = []
    for _ in range(n):
        t = spec.next_tick(after)
        assert t is not None
        out.append(utc_text(t))
        after = t
    return out


# --- cron ---------------------------------------------------------------------------------------------------
def test_cron_fields_steps_ranges_lists_and_names() -> None:
    c = parse("*/15 9-17 * jan,JUL mon-fri")
    assert c.minutes == {0, 15, 30, 45} and c.hours == set(range(9, 18))
    assert c.months == {1, 7} and c.weekdays == {1, 2, 3, 4, 5}
    assert parse("0 0 * * 7").weekdays == {0}
    assert parse("@hourly").minutes == {0} and parse("@daily").hours == {0}
    assert parse("5-59/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "x * * * *",
                                 "0 0 0 * *", "5-1 * * * *"])
def test_cron_refuses_what_does_not_parse(bad: str) -> None:
    with pytest.raises(CronError):
        parse(bad)


def test_cron_next_matches() -> None:
    assert utc_text(next_after(parse("30 2 * * *"), at("2026-03-01T02:30:00"))) == "2026-03-02T02:30:00Z"
    assert utc_text(next_after(parse("0 0 29 2 *"), at("2026-03-01T00:00:00"))) == "2028-02-29T00:00:00Z"
    assert next_after(parse("0 0 30 2 *"), at("2026-01-01T00:00:00")) is None
    midnight = at("2026-03-02T00:00:00")
    assert next_after(parse("0 0 * * *"), math.nextafter(midnight, -math.inf)) == midnight  # not rounded past it
    # both day fields restricted: either matches (cron's rule); 2026-03-01 is a Sunday
    days = ScheduleSpec("0 12 13 * fri")
    assert ticks(days, at("2026-03-01T00:00:00"), 3) == ["2026-03-06T12:00:00Z", "2026-03-13T12:00:00Z",
                                                         "2026-03-20T12:00:00Z"]


def test_cron_in_a_time_zone_across_daylight_saving() -> None:
    ny = ScheduleSpec("30 2 * * *", timezone="America/New_York")
    # 2026-03-08 02:30 does not exist in New York (the clock skips 02:00-03:00): that day does not fire
    assert ticks(ny, at("2026-03-07T03:00:00", "America/New_York"), 2) == ["2026-03-09T06:30:00Z",
                                                                          "2026-03-10T06:30:00Z"]
    # 2026-11-01 01:30 happens twice: it fires once, at the first
    fall = ScheduleSpec("30 1 * * *", timezone="America/New_York")
    got = ticks(fall, at("2026-10-31T12:00:00", "America/New_York"), 2)
    assert got == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
    hourly = ScheduleSpec("0 * * * *", timezone="Europe/Berlin")
    assert ticks(hourly, at("2026-10-25T01:30:00", "Europe/Berlin"), 3) == [
        "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]  # 02:00 once, then 03:00 CET


def test_intervals_with_offsets_and_bounds() -> None:
    spec = ScheduleSpec(intervals=(Interval(3600, 900),))
    assert ticks(spec, at("2026-01-01T10:20:00"), 2) == ["2026-01-01T11:15:00Z", "2026-01-01T12:15:00Z"]
    both = ScheduleSpec("0 12 * * *", intervals=((6 * 3600, 0),), start_at=at("2026-01-02T00:00:00"),
                        end_at=at("2026-01-02T13:00:00"))
    assert ticks(both, at("2026-01-01T00:00:00"), 3) == ["2026-01-02T00:00:00Z", "2026-01-02T06:00:00Z",
                                                        "2026-01-02T12:00:00Z"]
    assert both.next_tick(at("2026-01-02T12:00:00")) is None
    fine = Interval(0.1)
    t = 0.0
    for _ in range(1000):  # float steps never repeat a tick
        t2 = fine.next_after(t)
        assert t2 > t and abs(t2 - t - 0.1) < 1e-6
        t = t2


@pytest.mark.parametrize("spec", [ScheduleSpec(), ScheduleSpec("bad"), ScheduleSpec(intervals=((0, 0),)),
                                  ScheduleSpec(intervals=((60, 60),)), ScheduleSpec("* * * * *", timezone="Mars/Base"),
                                  ScheduleSpec("* * * * *", jitter=-1)])
def test_a_spec_that_cannot_fire_is_refused(spec: ScheduleSpec) -> None:
    with pytest.raises(sc.ScheduleError):
        spec.check()


def test_jitter_is_the_same_everywhere_and_within_bounds() -> None:
    t = at("2026-01-01T00:00:00")
    fires = [sc.fire_time("s", t + 60 * k, 30) for k in range(200)]
    assert fires == [sc.fire_time("s", t + 60 * k, 30) for k in range(200)]
    offsets = [f - (t + 60 * k) for k, f in enumerate(fires)]
    assert all(0 <= o < 30 for o in offsets) and len(set(offsets)) > 150
    assert sc.fire_time("other", t, 30) != sc.fire_time("s", t, 30)
    assert sc.fire_time("s", t, 0) == t


# --- planning -----------------------------------------------------------------------------------------------
def every_minute(policy: SchedulePolicy | None = None, **kw: object) -> sc.Schedule:
    return sc.new_schedule("nightly", "report", {"x": 1}, ScheduleSpec(intervals=((60, 0),), **kw),
                           at("2026-01-01T00:00:30"), policy=policy)


def started(s: sc.Schedule) -> list[str]:
    return [a.workflow_id for a in s.pending if a.kind == "start"]


def test_due_ticks_start_runs_named_by_schedule_and_tick() -> None:
    s = every_minute(SchedulePolicy(Overlap.ALLOW_ALL))
    assert utc_text(s.next_tick) == "2026-01-01T00:01:00Z" and sc.due_at(s) == s.next_tick
    assert sc.plan(s, at("2026-01-01T00:00:59")) == s
    s = sc.plan(s, at("2026-01-01T00:03:10"))
    assert started(s) == ["nightly-2026-01-01T00:01:00Z", "nightly-2026-01-01T00:02:00Z",
                          "nightly-2026-01-01T00:03:00Z"]
    assert utc_text(s.next_tick) == "2026-01-01T00:04:00Z" and s.started == 3 and s.running == ()
    assert sc.due_at(s) == at("2026-01-01T00:03:10") + sc.PENDING_GRACE
    s = sc.without(s, s.pending)
    assert s.pending == () and sc.due_at(s) == s.next_tick


def test_ticks_older_than_the_catch_up_window_are_missed() -> None:
    s = every_minute(SchedulePolicy(Overlap.ALLOW_ALL, catchup_window=150))
    s = sc.plan(s, at("2026-01-01T01:00:00"))  # down for an hour: the ticks of the last 150 s fire
    assert started(s) == ["nightly-2026-01-01T00:58:00Z", "nightly-2026-01-01T00:59:00Z",
                          "nightly-2026-01-01T01:00:00Z"]
    assert s.missed == 57 and [f.outcome for f in s.recent] == ["missed", "started", "started", "started"]


def test_skip_while_the_previous_run_is_open() -> None:
    s = sc.plan(every_minute(), at("2026-01-01T00:01:00"))
    first = started(s)
    assert s.running == tuple(first)
    s = sc.plan(sc.without(s, s.pending), at("2026-01-01T00:02:00"))
    assert s.pending == () and s.skipped == 1 and s.recent[-1].outcome == "skipped"
    s = sc.plan(s, at("2026-01-01T00:03:00"), closed=first)
    assert started(s) == ["nightly-2026-01-01T00:03:00Z"] and s.running == ("nightly-2026-01-01T00:03:00Z",)


def test_buffer_one_starts_one_tick_when_the_open_run_closes() -> None:
    s = sc.plan(every_minute(SchedulePolicy(Overlap.BUFFER_ONE)), at("2026-01-01T00:01:00"))
    s = sc.without(s, s.pending)
    s = sc.plan(s, at("2026-01-01T00:03:00"))  # 00:02 buffered, 00:03 skipped
    assert s.buffered == (at("2026-01-01T00:02:00"),) and s.skipped == 1 and s.pending == ()
    assert sc.plan(s, at("2026-01-01T00:03:30")).pending == ()  # still open
    s = sc.plan(s, at("2026-01-01T00:03:30"), closed=s.running)
    assert started(s) == ["nightly-2026-01-01T00:02:00Z"] and s.buffered == ()


@pytest.mark.parametrize("overlap,kind", [(Overlap.CANCEL_OTHER, "cancel"), (Overlap.TERMINATE_OTHER, "terminate")])
def test_cancel_or_terminate_the_open_run(overlap: Overlap, kind: str) -> None:
    s = sc.plan(every_minute(SchedulePolicy(overlap)), at("2026-01-01T00:01:00"))
    s = sc.plan(sc.without(s, s.pending), at("2026-01-01T00:02:00"))
    assert [(a.kind, a.workflow_id) for a in s.pending] == [(kind, "nightly-2026-01-01T00:01:00Z"),
                                                             ("start", "nightly-2026-01-01T00:02:00Z")]
    assert s.running == ("nightly-2026-01-01T00:02:00Z",)


def test_paused_ticks_pass_and_do_not_fire_on_unpause() -> None:
    s = sc.pause(every_minute(), True, "maintenance", at("2026-01-01T00:00:40"))
    s = sc.plan(s, at("2026-01-01T00:02:00"))
    assert s.pending == () and s.paused and s.note == "maintenance"
    s = sc.pause(replace(s, next_tick=at("2026-01-01T00:03:00")), False, "done", at("2026-01-01T00:05:30"))
    assert utc_text(s.next_tick) == "2026-01-01T00:06:00Z" and not s.paused


def test_trigger_and_backfill() -> None:
    s = every_minute(SchedulePolicy(Overlap.SKIP))
    s = sc.trigger(s, at("2026-01-01T00:00:40.5"))
    assert started(s) == ["nightly-2026-01-01T00:00:40.500Z"]
    s = sc.backfill(sc.without(s, s.pending), at("2025-12-31T23:58:00"), at("2026-01-01T00:00:00"),
                    at("2026-01-01T00:00:41"))
    assert started(s) == ["nightly-2025-12-31T23:58:00Z", "nightly-2025-12-31T23:59:00Z",
                          "nightly-2026-01-01T00:00:00Z"]
    with pytest.raises(sc.ScheduleError):
        sc.backfill(s, 10.0, 5.0, 11.0)


def test_a_failed_action_is_recorded_and_dropped() -> None:
    s = sc.plan(every_minute(), at("2026-01-01T00:01:00"))
    s = sc.without(s, (), [(s.pending[0], "no such workflow")], at("2026-01-01T00:01:01"))
    assert s.pending == () and s.running == () and s.recent[-1].outcome == "failed"


def test_the_record_round_trips_through_the_codec() -> None:
    s = sc.plan(every_minute(SchedulePolicy(Overlap.BUFFER_ONE), jitter=5.0, timezone="Europe/Paris"),
                at("2026-01-01T00:01:10"))
    again = sc.from_dict(codec.decode(codec.encode(sc.to_dict(s))))
    assert again == s
    assert len(sc.next_times(s, 3)) == 3


def test_plan_is_deterministic() -> None:
    s = every_minute(jitter=20.0)
    now = datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc).timestamp()
    assert sc.plan(s, now) == sc.plan(s, now)
