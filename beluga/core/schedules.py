"""Durable schedules, the pure part: what a schedule is (`ScheduleSpec`, `SchedulePolicy`, `Schedule`) and
every decision about it, as functions of the schedule's record and the time they are given.

Why pure: every worker of a fleet fires schedules, and they must agree without talking. So each decision is
a function of the stored record and `now` (no clock, no randomness here): jitter is hashed from the schedule
id and the tick, and a tick's run has the id `<schedule id>-<tick in UTC>`, the same in every process. A
worker `plan`s a due schedule into `pending` actions and stores the result conditionally on the version it
read (one worker wins each tick); the actions are then done idempotently (starting a run whose id the tick
fixed) by whoever finds them still pending, so a worker that dies in between loses nothing and doubles
nothing."""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from beluga.core.cron import Cron, next_after, parse, utc_text
from beluga.core.errors import WorkflowError

RECENT = 20  # actions kept in `Schedule.recent`
TICKS_PER_PLAN = 100  # ticks one plan decides; a longer backlog is decided by the next plans
MISSED_PER_PLAN = 10_000  # ticks past the catch-up window one plan passes over
PENDING_GRACE = 5.0  # seconds the worker that decided an action has to do it before any other worker does
BUFFER_POLL = 1.0  # seconds between looks at whether a buffered tick's blocking run closed
MAX_BACKFILL = 10_000


class ScheduleError(WorkflowError, ValueError):
    """A schedule's spec or request is invalid; the message says why."""


class Overlap(str, enum.Enum):
    """What a tick does while a run this schedule started is still open."""

    SKIP = "skip"  # nothing: the tick is skipped
    BUFFER_ONE = "buffer_one"  # start it once the open run closes; one buffered tick at most, later ones skip
    ALLOW_ALL = "allow_all"  # start it anyway
    CANCEL_OTHER = "cancel_other"  # request cancellation of the open run, and start
    TERMINATE_OTHER = "terminate_other"  # terminate the open run, and start

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Interval:
    """Every `every` seconds, at `offset` seconds past each multiple of `every` since the Unix epoch
    (`Interval(3600, 900)`: at a quarter past every hour, UTC)."""

    every: float
    offset: float = 0.0

    def next_after(self, after: float) -> float:
        k = math.floor((after - self.offset) / self.every) + 1
        tick = self.offset + k * self.every
        return tick if tick > after else self.offset + (k + 1) * self.every  # a quotient rounded down a step


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a schedule fires: at each match of any `cron` expression (in `timezone`) and each tick of any
    interval, between `start_at` and `end_at` (epoch seconds), each fire delayed by a part of `jitter`
    seconds fixed per tick. A single string is taken as one cron expression."""

    cron: tuple[str, ...] = ()
    intervals: tuple[Interval, ...] = ()
    timezone: str = "UTC"
    jitter: float = 0.0
    start_at: float | None = None
    end_at: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.cron, str):
            object.__setattr__(self, "cron", (self.cron,))
        object.__setattr__(self, "cron", tuple(self.cron))
        object.__setattr__(self, "intervals", tuple(i if isinstance(i, Interval) else Interval(*_pair(i))
                                                    for i in self.intervals))

    def check(self) -> None:
        """Raise ScheduleError when the spec cannot fire as meant."""
        if not self.cron and not self.intervals:
            raise ScheduleError("a schedule spec needs at least one cron expression or interval")
        for expression in self.cron:
            try:
                parse(expression)
            except ValueError as exc:
                raise ScheduleError(str(exc)) from None
        for i in self.intervals:
            if not i.every > 0 or not 0 <= i.offset < i.every:
                raise ScheduleError(f"interval every={i.every} offset={i.offset}: every must be > 0 and "
                                    "0 <= offset < every")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {self.timezone!r}") from None
        if self.jitter < 0:
            raise ScheduleError("jitter must be >= 0")

    def next_tick(self, after: float) -> float | None:
        """The first nominal tick strictly after `after` (jitter not added), or None when none is left."""
        if self.start_at is not None and after < self.start_at:
            after = math.nextafter(self.start_at, -math.inf)
        candidates = [i.next_after(after) for i in self.intervals]
        candidates += [t for t in (next_after(c, after, self.timezone) for c in _parsed(self.cron)) if t is not None]
        if not candidates:
            return None
        tick = min(candidates)
        return None if self.end_at is not None and tick > self.end_at else tick


def _pair(value: Any) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), 0.0
    return float(value[0]), float(value[1]) if len(value) > 1 else 0.0


def _parsed(expressions: tuple[str, ...]) -> list[Cron]:
    return [parse(e) for e in expressions]


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """`overlap`: see `Overlap`. `catchup_window`: how late a tick may still fire, in seconds: after every
    worker was down (or Redis was), the ticks missed within the window fire, older ones are counted as
    missed."""

    overlap: Overlap = Overlap.SKIP
    catchup_window: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", Overlap(self.overlap))


@dataclass(frozen=True, slots=True)
class Action:
    """Something decided and not yet known done: start the run `workflow_id` for `tick`, or cancel or
    terminate the open run `workflow_id`. `source`: scheduled, trigger or backfill."""

    kind: str  # start | cancel | terminate
    workflow_id: str
    tick: float
    decided_at: float
    source: str = "scheduled"


@dataclass(frozen=True, slots=True)
class Fired:
    """One line of a schedule's recent record: what became of a tick."""

    tick: float
    at: float
    outcome: str  # started | skipped | buffered | missed | failed
    workflow_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule's whole record, as stored (see `to_dict`); `version` counts its writes."""

    id: str
    workflow_type: str
    input: Any
    spec: ScheduleSpec
    policy: SchedulePolicy = field(default_factory=SchedulePolicy)
    queue: str | None = None
    timeout: float | None = None
    paused: bool = False
    note: str = ""
    next_tick: float | None = None
    pending: tuple[Action, ...] = ()
    buffered: tuple[float, ...] = ()
    running: tuple[str, ...] = ()  # runs it started that were open when last looked at (not under ALLOW_ALL)
    recent: tuple[Fired, ...] = ()
    started: int = 0
    missed: int = 0
    skipped: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0


def new_schedule(schedule_id: str, workflow_type: str, input: Any, spec: ScheduleSpec, now: float, *,
                 policy: SchedulePolicy | None = None, queue: str | None = None, timeout: float | None = None,
                 paused: bool = False, note: str = "") -> Schedule:
    spec.check()
    return Schedule(schedule_id, workflow_type, input, spec, policy or SchedulePolicy(), queue, timeout, paused,
                    note, spec.next_tick(now), created_at=now, updated_at=now)


def run_id_for(schedule_id: str, tick: float) -> str:
    """The workflow id of the run a tick starts: the same in every process, so a tick starts one run."""
    return f"{schedule_id}-{utc_text(tick)}"


def fire_time(schedule_id: str, tick: float, jitter: float) -> float:
    """When `tick` fires: up to `jitter` seconds after it, by a fraction every worker computes alike."""
    if jitter <= 0:
        return tick
    digest = hashlib.sha256(f"{schedule_id}\0{tick!r}".encode()).digest()
    return tick + jitter * (int.from_bytes(digest[:8], "big") / 2**64)


def next_times(s: Schedule, n: int = 5) -> list[float]:
    """The next `n` fire times (jitter included), from the schedule's next tick."""
    out, tick = [], s.next_tick
    while tick is not None and len(out) < n:
        out.append(fire_time(s.id, tick, s.spec.jitter))
        tick = s.spec.next_tick(tick)
    return out


def plan(s: Schedule, now: float, closed: Iterable[str] = ()) -> Schedule:
    """Decide every tick due by `now` (at most TICKS_PER_PLAN of them): the runs in `closed` (runs of
    `s.running` the caller found closed) no longer block; a buffered tick starts once none does; a tick
    older than the catch-up window is missed; a tick while paused passes; any other tick is decided by the
    overlap policy. Returns the schedule with the decisions in `pending` and `recent`, the next tick moved
    on. Callers store it only if the record is still at `s.version`."""
    done = set(closed)
    s = replace(s, running=tuple(w for w in s.running if w not in done))
    if s.buffered and not s.running and not s.paused:
        s = _start(replace(s, buffered=s.buffered[1:]), s.buffered[0], now, "scheduled")
    window = s.policy.catchup_window
    decided = passed = 0
    while s.next_tick is not None and decided < TICKS_PER_PLAN:
        tick = s.next_tick
        if fire_time(s.id, tick, s.spec.jitter) > now:
            break
        if tick < now - window:
            if passed >= MISSED_PER_PLAN:
                break
            passed += 1
            s = replace(s, missed=s.missed + 1, next_tick=s.spec.next_tick(tick))
            continue
        if passed:
            s, passed = _missed(s, passed, now), 0
        decided += 1
        if not s.paused:
            s = _decide(s, tick, now, "scheduled")
        s = replace(s, next_tick=s.spec.next_tick(tick))
    if passed:
        s = _missed(s, passed, now)
    return s


def _missed(s: Schedule, count: int, now: float) -> Schedule:
    line = Fired(s.next_tick or now, now, "missed", None, f"{count} tick(s) older than the catch-up window "
                 f"({s.policy.catchup_window:g}s) before this one")
    return _note(s, line)


def _decide(s: Schedule, tick: float, now: float, source: str) -> Schedule:
    """One tick under the overlap policy (see `Overlap`)."""
    overlap = s.policy.overlap
    if not s.running or overlap is Overlap.ALLOW_ALL:
        return _start(s, tick, now, source)
    if overlap is Overlap.SKIP or (overlap is Overlap.BUFFER_ONE and s.buffered):
        return _note(replace(s, skipped=s.skipped + 1),
                     Fired(tick, now, "skipped", None, f"{s.running[-1]} still open"))
    if overlap is Overlap.BUFFER_ONE:
        return _note(replace(s, buffered=(tick,)), Fired(tick, now, "buffered", None, f"{s.running[-1]} still open"))
    kind = "cancel" if overlap is Overlap.CANCEL_OTHER else "terminate"
    stops = tuple(Action(kind, w, tick, now, source) for w in s.running)
    return _start(replace(s, pending=s.pending + stops, running=()), tick, now, source)


def _start(s: Schedule, tick: float, now: float, source: str) -> Schedule:
    workflow_id = run_id_for(s.id, tick)
    if any(a.kind == "start" and a.workflow_id == workflow_id for a in s.pending):
        return s  # the same tick twice (a trigger in the same millisecond): one run
    track = s.policy.overlap is not Overlap.ALLOW_ALL
    s = replace(s, pending=(*s.pending, Action("start", workflow_id, tick, now, source)), started=s.started + 1,
                running=(*s.running, workflow_id) if track else s.running)
    return _note(s, Fired(tick, now, "started", workflow_id, source))


def _note(s: Schedule, line: Fired) -> Schedule:
    return replace(s, recent=(*s.recent, line)[-RECENT:])


def pause(s: Schedule, paused: bool, note: str, now: float) -> Schedule:
    """Pause (no tick fires, buffered ones wait) or unpause, with a note saying why. Ticks that came while
    paused do not fire on unpausing."""
    next_tick = s.next_tick
    if not paused and s.paused and next_tick is not None and next_tick <= now:
        next_tick = s.spec.next_tick(now)
    return replace(s, paused=paused, note=note, next_tick=next_tick)


def trigger(s: Schedule, now: float, closed: Iterable[str] = ()) -> Schedule:
    """Fire once now, outside the spec, under the overlap policy (also while paused)."""
    done = set(closed)
    s = replace(s, running=tuple(w for w in s.running if w not in done))
    return _decide(s, now, now, "trigger")


def backfill(s: Schedule, start: float, end: float, now: float) -> Schedule:
    """Start a run for every tick of the spec from `start` to `end` (both included), whatever runs are
    open: backfilled ticks run side by side. A tick that already started a run starts no other."""
    if end < start:
        raise ScheduleError("a backfill's end comes before its start")
    ticks, tick = [], s.spec.next_tick(math.nextafter(start, -math.inf))
    while tick is not None and tick <= end:
        ticks.append(tick)
        if len(ticks) > MAX_BACKFILL:
            raise ScheduleError(f"a backfill of more than {MAX_BACKFILL} ticks: split it")
        tick = s.spec.next_tick(tick)
    for tick in ticks:
        workflow_id = run_id_for(s.id, tick)
        s = replace(s, pending=(*s.pending, Action("start", workflow_id, tick, now, "backfill")),
                    started=s.started + 1)
    return _note(s, Fired(ticks[0], now, "started", None, f"backfill of {len(ticks)} tick(s)")) if ticks else s


def without(s: Schedule, done: Iterable[Action], failed: Iterable[tuple[Action, str]] = (),
            now: float = 0.0) -> Schedule:
    """The schedule with the actions `done` (and those `failed`, each with why) no longer pending."""
    failures = list(failed)
    gone = {(a.kind, a.workflow_id) for a in [*done, *(a for a, _ in failures)]}
    s = replace(s, pending=tuple(a for a in s.pending if (a.kind, a.workflow_id) not in gone))
    for action, why in failures:
        s = _note(replace(s, running=tuple(w for w in s.running if w != action.workflow_id)),
                  Fired(action.tick, now, "failed", action.workflow_id, why))
    return s


def due_at(s: Schedule) -> float | None:
    """When a worker should look at the schedule next: its next fire, a pending action's grace end (for a
    worker other than the one that decided it), a buffered tick's next look; None: never again."""
    times = [a.decided_at + PENDING_GRACE for a in s.pending]
    if s.buffered and not s.paused:
        times.append(s.updated_at + BUFFER_POLL)
    if s.next_tick is not None:
        times.append(fire_time(s.id, s.next_tick, s.spec.jitter))
    return min(times) if times else None


def to_dict(s: Schedule) -> dict[str, Any]:
    """The stored form (codec types only)."""
    spec = s.spec
    return {
        "id": s.id, "workflow_type": s.workflow_type, "input": s.input, "queue": s.queue, "timeout": s.timeout,
        "spec": {"cron": list(spec.cron), "intervals": [[i.every, i.offset] for i in spec.intervals],
                 "timezone": spec.timezone, "jitter": spec.jitter, "start_at": spec.start_at, "end_at": spec.end_at},
        "policy": {"overlap": s.policy.overlap.value, "catchup_window": s.policy.catchup_window},
        "paused": s.paused, "note": s.note, "next_tick": s.next_tick,
        "pending": [[a.kind, a.workflow_id, a.tick, a.decided_at, a.source] for a in s.pending],
        "buffered": list(s.buffered), "running": list(s.running),
        "recent": [[f.tick, f.at, f.outcome, f.workflow_id, f.detail] for f in s.recent],
        "started": s.started, "missed": s.missed, "skipped": s.skipped,
        "created_at": s.created_at, "updated_at": s.updated_at, "version": s.version,
    }


def from_dict(d: dict[str, Any]) -> Schedule:
    spec = d["spec"]
    return Schedule(
        d["id"], d["workflow_type"], d["input"],
        ScheduleSpec(tuple(spec["cron"]), tuple(Interval(*i) for i in spec["intervals"]), spec["timezone"],
                     spec["jitter"], spec["start_at"], spec["end_at"]),
        SchedulePolicy(Overlap(d["policy"]["overlap"]), d["policy"]["catchup_window"]),
        d["queue"], d["timeout"], d["paused"], d["note"], d["next_tick"],
        tuple(Action(*a) for a in d["pending"]), tuple(d["buffered"]), tuple(d["running"]),
        tuple(Fired(*f) for f in d["recent"]), d["started"], d["missed"], d["skipped"],
        d["created_at"], d["updated_at"], d["version"])
