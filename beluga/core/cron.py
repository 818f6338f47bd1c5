"""Five-field cron expressions (minute hour day-of-month month day-of-week) and their next match in a time
zone. Written here rather than taken from a dependency: the grammar is small, and the one subtle part, the
days a clock skips or repeats at a daylight-saving change, must behave the same on every worker.

Grammar (Vixie cron's): `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b-c`, month names
`jan`..`dec`, weekday names `sun`..`sat` (0 and 7 are both Sunday), and the macros `@yearly` (`@annually`),
`@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`. When both day fields are restricted a day
matching either one matches, as in cron.

Wall times are matched in the zone: a time the clock skips (spring forward) does not fire that day; a time
it shows twice (fall back) fires once, at its first occurrence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                      "nov", "dec"], start=1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("day of week", 0, 7, _DAYS))
_SEARCH_YEARS = 8  # an expression with no match this far ahead (`0 0 30 2 *`) has none


class CronError(ValueError):
    """The expression does not parse; the message names the field and why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field (Sunday is 0)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    def matches_day(self, d: datetime) -> bool:
        weekday = (d.weekday() + 1) % 7  # Monday is 0 in Python, 1 in cron
        if self.any_day or self.any_weekday:
            return (self.any_day or d.day in self.days) and (self.any_weekday or weekday in self.weekdays)
        return d.day in self.days or weekday in self.weekdays


def parse(expression: str) -> Cron:
    """Parse a five-field expression or macro; raises CronError."""
    text = MACROS.get(expression.strip().lower(), expression.strip().lower())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron expression {expression!r} has {len(parts)} fields, not 5 "
                        "(minute hour day-of-month month day-of-week)")
    sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return Cron(expression, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = _value(a, names), _value(b, names)
            else:
                start = _value(body, names)
                end = high if step_text else start
        except ValueError:
            raise CronError(f"cron {name} field {text!r}: {item!r} is not a number, name, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"cron {name} field {text!r}: {item!r} is outside {low}-{high} or steps by < 1")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def next_after(cron: Cron, after: float, zone: str = "UTC") -> float | None:
    """The first time strictly after `after` (epoch seconds) whose wall clock in `zone` matches, or None
    when none comes within the next few years."""
    tz = ZoneInfo(zone)
    # floor first: fromtimestamp rounds to the microsecond, which would carry a time just before a minute into it
    wall = datetime.fromtimestamp(math.floor(after), tz).replace(tzinfo=None, second=0) + timedelta(minutes=1)
    limit = wall + timedelta(days=366 * _SEARCH_YEARS)
    while wall < limit:
        if wall.month not in cron.months:
            wall = (wall.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
        elif not cron.matches_day(wall):
            wall = wall.replace(hour=0, minute=0) + timedelta(days=1)
        elif wall.hour not in cron.hours:
            wall = wall.replace(minute=0) + timedelta(hours=1)
        elif wall.minute not in cron.minutes:
            wall += timedelta(minutes=1)
        else:
            at = _instant(wall, tz)
            if at is not None and at > after:
                return at
            wall += timedelta(minutes=1)
    return None


def _instant(wall: datetime, tz: ZoneInfo) -> float | None:
    """The first instant the clock in `tz` shows `wall`; None when it never does (skipped forward)."""
    at = wall.replace(tzinfo=tz, fold=0).timestamp()
    back = datetime.fromtimestamp(at, tz).replace(tzinfo=None)
    return at if back == wall else None


def utc_text(at: float) -> str:
    """An instant as ISO 8601 UTC, to the second (to the millisecond when it has a fraction)."""
    d = datetime.fromtimestamp(at, timezone.utc)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.microsecond:
        text += f".{d.microsecond // 1000:03d}"
    return text + "Z"
