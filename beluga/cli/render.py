"""How the command shows things: times, values, tables, and a run's history as a timeline."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from beluga.core.records import Event, EventType, WorkflowState
from beluga.history_json import to_jsonable

E = EventType


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def when(ts: float | None) -> str:
    """Epoch seconds for a table: UTC, to the second."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def span(secs: float) -> str:
    """A duration, short: 0.250s, 12.0s, 5m03s, 2h05m, 3d04h."""
    secs = abs(secs)
    if secs < 60:
        return f"{secs:.3f}s" if secs < 10 else f"{secs:.1f}s"
    minutes, s = divmod(int(secs), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d{h:02d}h"


def relative(ts: float, now: float) -> str:
    return f"in {span(ts - now)}" if ts >= now else f"{span(now - ts)} ago"


def value(v: Any, limit: int = 80) -> str:
    """A value as compact JSON (tagged where JSON lacks the type), cut at `limit` characters."""
    text = json.dumps(to_jsonable(v), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def dumps(v: Any) -> str:
    return json.dumps(to_jsonable(v), ensure_ascii=False, indent=2)


def error_line(err: dict[str, Any] | None) -> str | None:
    if not err:
        return None
    return f"{err.get('type', 'Error')}: {one_line(str(err.get('message', '')))}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell; colour (`Paint`) takes no room."""
    widths = [max(visible(h), *(visible(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible(text: str) -> int:
    return len(_ANSI.sub("", text))


def pad(text: str, width: int) -> str:
    return text + " " * (width - visible(text))


class Paint:
    """A run's status in colour on a terminal: off when the output is not a TTY, when `NO_COLOR` is set
    (https://no-color.org) or the terminal is dumb."""

    CODES = {"running": "34", "completed": "32", "failed": "31", "timed_out": "31", "canceled": "90",
             "stuck": "33;1"}

    def __init__(self, on: bool) -> None:
        self.on = on

    @classmethod
    def for_stream(cls, stream: TextIO) -> Paint:
        tty = getattr(stream, "isatty", lambda: False)()
        return cls(bool(tty) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")

    def status(self, state: WorkflowState, *, long: bool = False) -> str:
        stuck = state.status.is_open and bool(state.error)
        text = state.status.value + (("  (stuck: its code cannot continue it)" if long else " (stuck)")
                                     if stuck else "")
        code = self.CODES["stuck" if stuck else state.status.value]
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text


def waiting_lines(w: Any) -> list[str]:
    """What a run waits on (a `beluga.cli.runs.RunWaits`), one line each, indented by two spaces."""
    import time

    now = time.time()
    lines = []
    for a in w.activities:
        text = f"  activity {a['name']} (seq {a['seq']}): attempt {a['attempt']} {a['state']}"
        if a["not_before"]:
            text += f", due {when(a['not_before'])} ({relative(a['not_before'], now)})"
        lines.append(text)
    for t in w.timers:
        lines.append(f"  timer (seq {t['seq']}): fires {when(t['fire_at'])} ({relative(t['fire_at'], now)})")
    for c in w.children:
        lines.append(f"  child workflow {c['workflow_type']} {c['workflow_id']} (seq {c['seq']})")
    if w.code is not None:
        if w.code.waiting_for_signals:
            lines.append("  signal " + " or ".join(repr(s) for s in w.code.waiting_for_signals))
        for name, n in w.code.buffered_signals.items():
            lines.append(f"  (received, not yet read by the code: {n} x {name!r})")
    elif w.code_error:
        lines.append(f"  (its code cannot replay it: {one_line(w.code_error)[:200]})")
    elif not (w.activities or w.timers or w.children):
        lines.append("  a signal, presumably (which one: pass --imports with the workflow's module)")
    if w.deadline is not None:
        lines.append(f"  deadline {when(w.deadline)} ({relative(w.deadline, now)})")
    if len(lines) == 0:
        lines.append("  nothing the history shows")
    return lines


# --- the timeline ------------------------------------------------------------------------------------------
def timeline(events: Sequence[Event], *, start: float | None = None, width: int | None = None) -> list[str]:
    """One line per event: its id, the time since the run started (`start`: the first event's time), its
    type, what it says."""
    if not events:
        return []
    start = events[0].timestamp if start is None else start
    width = len(str(events[-1].id)) if width is None else width
    type_width = max(len(ev.type) for ev in events)
    out = []
    for ev in events:
        offset = "+" + span(ev.timestamp - start)
        text = describe(ev)
        if ev.attrs.get("deferred"):
            text += "  (deferred)"
        out.append(f"  #{str(ev.id).ljust(width)}  {offset:>9}  {ev.type.ljust(type_width)}  {text}".rstrip())
    return out


def describe(ev: Event) -> str:
    """What an event says, and who asked for it when an operator did (`by alice@ops-1`)."""
    text = _what(ev)
    who = ev.attrs.get("identity")
    if who and ev.type != E.CANCEL_REQUESTED:
        return f"{text}  by {who}" if text else f"by {who}"
    return f"by {who}" if who else text


def _what(ev: Event) -> str:
    a = ev.attrs
    t = ev.type
    seq = f"seq {a.get('seq')}"
    if t == E.WORKFLOW_STARTED:
        parts = [f"{a.get('workflow_type')} input={value(a.get('input'))}"]
        if a.get("deadline") is not None:
            parts.append(f"deadline {when(a['deadline'])}")
        if a.get("parent"):
            parts.append(f"child of {a['parent'].get('workflow_id')}")
        if a.get("continued_from"):
            parts.append(f"continues run {a['continued_from']}")
        return ", ".join(parts)
    if t == E.ACTIVITY_SCHEDULED:
        opts = [f"{k}={a[k]:g}" for k in ("timeout", "heartbeat_timeout", "schedule_to_start_timeout")
                if a.get(k) is not None]
        if a.get("retry"):
            opts.append(f"max_attempts={a['retry'].get('max_attempts')}")
        if a.get("queue"):
            opts.append(f"queue={a['queue']}")
        return f"{a.get('name')} ({seq}) input={value(a.get('input'), 60)}" + (" " + " ".join(opts) if opts else "")
    if t == E.ACTIVITY_STARTED:
        return f"{seq} attempt {a.get('attempt', 1)}"
    if t == E.ACTIVITY_COMPLETED:
        return f"{seq} attempt {a.get('attempt', 1)} result={value(a.get('result'), 60)}"
    if t == E.ACTIVITY_FAILED:
        then = f"retry in {span(a['retry_in'])}" if a.get("retry_in") is not None else "no retry left"
        return f"{seq} attempt {a.get('attempt', 1)} {error_line(a.get('error'))}; {then}"
    if t == E.ACTIVITY_WAITING:
        return f"{seq} attempt {a.get('attempt', 1)} waits for its {a.get('why')} limit {a.get('limit')!r} until " \
               f"{when(a.get('until'))}"
    if t == E.TIMER_STARTED:
        return f"{seq} {span(a.get('duration', 0))}, fires {when(a.get('fire_at'))}"
    if t == E.TIMER_FIRED:
        return seq
    if t == E.SIGNAL_RECEIVED:
        return f"{a.get('name')} payload={value(a.get('payload'), 60)}"
    if t == E.UPDATE_ACCEPTED:
        return f"{a.get('name')} id={a.get('update_id')} args={value(a.get('args'), 60)}"
    if t == E.UPDATE_COMPLETED:
        ended = error_line(a.get("error")) if "error" in a else f"result={value(a.get('result'), 60)}"
        return f"id={a.get('update_id')} {ended}"
    if t == E.MARKER_RECORDED:
        if a.get("kind") == "patch":
            v = a.get("value") or {}
            return f"patch {v.get('id')!r}" + (" (deprecated)" if v.get("deprecated") else "")
        return f"{a.get('kind')} ({seq}) value={value(a.get('value'), 60)}"
    if t == E.CHILD_WORKFLOW_STARTED:
        policy = a.get("parent_close_policy")
        return (f"{a.get('workflow_type')} id={a.get('workflow_id')} ({seq}) input={value(a.get('input'), 40)}"
                + (f" parent_close_policy={policy}" if policy and policy != "terminate" else ""))
    if t == E.CHILD_WORKFLOW_COMPLETED:
        return f"{seq} result={value(a.get('result'), 60)}"
    if t == E.CHILD_WORKFLOW_FAILED:
        return f"{seq} {error_line(a.get('error'))}"
    if t == E.WORKFLOW_COMPLETED:
        return f"result={value(a.get('result'))}"
    if t == E.WORKFLOW_FAILED:
        return error_line(a.get("error")) or ""
    if t == E.WORKFLOW_TERMINATED:
        return f"reason: {a.get('reason') or '(none given)'}"
    if t == E.WORKFLOW_CONTINUED_AS_NEW:
        return f"input={value(a.get('input'))}"
    return " ".join(f"{k}={value(v, 40)}" for k, v in a.items() if k != "deferred")
