"""`beluga schedule create|list|show|pause|unpause|trigger|backfill|delete`: durable schedules from the command
line, through the target's executor (its `create_schedule`, ...), so the same command works on a store, the
fleet and Temporal (docs/schedules.md)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from beluga import history_json
from beluga.cli import render
from beluga.cli.errors import EXIT_USAGE, CLIError
from beluga.cli.target import Target
from beluga.core.schedules import Interval, Overlap, Schedule, SchedulePolicy, ScheduleSpec, to_dict
from beluga.schedules import ScheduleDescription

ACTIONS = ("create", "list", "show", "pause", "unpause", "trigger", "backfill", "delete")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_parser(sub: Any, command: Any) -> None:
    """`schedule` and its actions, on the top-level subparsers (`command` makes a subcommand's parser)."""
    p = command("schedule", "durable schedules: create, list, show, pause, unpause, trigger, backfill, delete",
                json=False)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    def action(name: str, help: str, *, one: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help, description=help)
        if one:
            a.add_argument("schedule_id", metavar="ID")
        a.add_argument("--json", action="store_true", help="machine-readable output")
        return a

    a = action("create", "a schedule that starts a run of TYPE at each tick")
    a.add_argument("workflow_type", metavar="TYPE")
    a.add_argument("--input", metavar="JSON", help="each run's input, as JSON")
    a.add_argument("--cron", action="append", default=[], metavar="EXPR",
                   help='a five-field cron expression ("0 3 * * mon-fri") or @hourly, @daily...; repeatable')
    a.add_argument("--every", action="append", default=[], metavar="DURATION[+OFFSET]",
                   help="an interval since the epoch, with an offset: 1h, 15m, 1h+15m, 3600; repeatable")
    a.add_argument("--timezone", default="UTC", help="the cron expressions' time zone (UTC)")
    a.add_argument("--jitter", default="0", metavar="DURATION", help="delay each tick by up to this (0)")
    a.add_argument("--start", metavar="WHEN", help="no tick before: ISO time (UTC unless it says)")
    a.add_argument("--end", metavar="WHEN", help="no tick after: ISO time")
    a.add_argument("--overlap", choices=[o.value for o in Overlap], default=Overlap.SKIP.value,
                   help="while a run it started is open: skip (default), buffer_one, allow_all, cancel_other, "
                        "terminate_other")
    a.add_argument("--catchup-window", default="5m", metavar="DURATION",
                   help="how late a tick may still fire after an outage (5m)")
    a.add_argument("--queue", help="the Celery queue (or Temporal task queue) of its runs")
    a.add_argument("--timeout", metavar="DURATION", help="bound on each run")
    a.add_argument("--paused", action="store_true", help="create it paused")
    a.add_argument("--note", default="", help="a note, shown with the schedule")
    action("list", "every schedule, with its next fire time", one=False)
    action("show", "a schedule: spec, policy, state, next fire times, recent ticks")
    for name, help in (("pause", "no tick fires until unpaused"), ("unpause", "ticks fire again")):
        action(name, help).add_argument("--note", default="", help="why (shown with the schedule)")
    action("trigger", "fire once now, under the overlap policy")
    a = action("backfill", "start a run for every tick between --start and --end (both included)")
    a.add_argument("--start", required=True, metavar="WHEN", help="ISO time (UTC unless it says) or an age: 2d")
    a.add_argument("--end", required=True, metavar="WHEN", help="ISO time or an age: 0s is now")
    action("delete", "forget the schedule (its runs stay)")


def duration(text: str, option: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise CLIError(f"{option} {text!r}: give seconds or a duration such as 90s, 15m, 1h, 2d", EXIT_USAGE)
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def interval(text: str) -> Interval:
    every, _, offset = text.partition("+")
    return Interval(duration(every, "--every"), duration(offset, "--every") if offset else 0.0)


def cmd_schedule(args: argparse.Namespace, target: Target) -> int:
    from beluga.cli.commands import emit_json, out, parse_json, parse_since

    ex = target.executor()
    sid = getattr(args, "schedule_id", None)
    if args.action == "create":
        if not args.cron and not args.every:
            raise CLIError("schedule create needs --cron or --every", EXIT_USAGE)
        target.need_code(args.workflow_type, "schedule")
        spec = ScheduleSpec(tuple(args.cron), tuple(interval(e) for e in args.every), args.timezone,
                            duration(args.jitter, "--jitter"), parse_since(args.start, "--start"),
                            parse_since(args.end, "--end"))
        policy = SchedulePolicy(Overlap(args.overlap), duration(args.catchup_window, "--catchup-window"))
        d = ex.create_schedule(sid, args.workflow_type, parse_json(args.input, "--input"), spec, policy=policy,
                               queue=args.queue, timeout=duration(args.timeout, "--timeout") if args.timeout else None,
                               paused=args.paused, note=args.note)
        done = f"created schedule {sid}"
    elif args.action == "list":
        found = ex.list_schedules()
        if args.json:
            emit_json([jsonable(d) for d in found])
        else:
            out(render.table(["ID", "WORKFLOW", "STATE", "NEXT", "STARTED", "SPEC"],
                             [[d.id, d.schedule.workflow_type, state(d.schedule),
                               render.when(d.next_times[0] if d.next_times else None), str(d.schedule.started),
                               spec_text(d.schedule)] for d in found]))
        return 0
    elif args.action == "show":
        d = ex.describe_schedule(sid)
        done = ""
    elif args.action == "pause":
        d, done = ex.pause_schedule(sid, args.note), f"paused schedule {sid}"
    elif args.action == "unpause":
        d, done = ex.unpause_schedule(sid, args.note), f"unpaused schedule {sid}"
    elif args.action == "trigger":
        d, done = ex.trigger_schedule(sid), f"triggered schedule {sid}"
    elif args.action == "backfill":
        start, end = parse_since(args.start, "--start"), parse_since(args.end, "--end")
        assert start is not None and end is not None
        d, done = ex.backfill_schedule(sid, start, end), f"backfilled schedule {sid}"
    else:
        ex.delete_schedule(sid)
        if args.json:
            emit_json({"deleted": sid})
        else:
            out(f"deleted schedule {sid}")
        return 0
    if args.action in ("trigger", "backfill"):
        target.settle(60.0)  # in-process: carry the runs it started forward here until they park
    if args.json:
        emit_json(jsonable(d))
    else:
        if done:
            out(done)
        out("\n".join(show_lines(d)))
    return 0


def state(s: Schedule) -> str:
    return f"paused ({s.note})" if s.paused and s.note else "paused" if s.paused else "active"


def spec_text(s: Schedule) -> str:
    spec = s.spec
    parts = [f"cron {c!r}" for c in spec.cron]
    parts += [f"every {seconds(i.every)}" + (f"+{seconds(i.offset)}" if i.offset else "") for i in spec.intervals]
    text = ", ".join(parts) + (f" in {spec.timezone}" if spec.cron and spec.timezone != "UTC" else "")
    return text + (f", jitter {seconds(spec.jitter)}" if spec.jitter else "")


def seconds(value: float) -> str:
    """A duration of a spec, as given: 90s, 15m, 1h, 2h30m00s..."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s" if value < 60 else render.span(value)


def show_lines(d: ScheduleDescription) -> list[str]:
    s = d.schedule
    lines = [f"schedule {s.id}: starts {s.workflow_type} with {render.value(s.input, 200)}, {state(s)}",
             f"  spec     {spec_text(s)}" + (f", from {render.when(s.spec.start_at)}" if s.spec.start_at else "")
             + (f", until {render.when(s.spec.end_at)}" if s.spec.end_at else ""),
             f"  policy   overlap {s.policy.overlap.value}, catch-up window {render.span(s.policy.catchup_window)}",
             f"  counts   started {s.started}, skipped {s.skipped}, missed {s.missed}"]
    if s.note and not s.paused:
        lines.append(f"  note     {s.note}")
    if s.running:
        lines.append(f"  open     {', '.join(s.running)}")
    lines.append("  next     " + (", ".join(render.when(t) for t in d.next_times) or "none"))
    for f in reversed(s.recent):
        parts = (render.when(f.tick), f"{f.outcome:<8}", f.workflow_id, f.detail)
        lines.append("  " + "  ".join(x for x in parts if x))
    return lines


def jsonable(d: ScheduleDescription) -> dict[str, Any]:
    data = history_json.to_jsonable(to_dict(d.schedule))
    data["next_times"] = [render.iso(t) for t in d.next_times]
    return data
