"""The subcommands. Each takes the parsed arguments and the target, prints its result to stdout and
returns the exit status; problems are raised as `CLIError` (or Beluga's own errors) and reported by
`beluga.cli.main` as one line."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from beluga import history_json
from beluga.cli import render
from beluga.cli.batch import cmd_batch  # noqa: F401 - `beluga batch ...`, dispatched by name
from beluga.cli.errors import EXIT_FAILED, EXIT_USAGE, CLIError
from beluga.cli.reset import cmd_reset  # noqa: F401 - `beluga reset ...`, dispatched by name
from beluga.cli.runs import (
    RunQuery,
    attributes_line,
    earlier_runs,
    list_page,
    open_run,
    operator,
    retry_run,
    waiting,
    where_of,
)
from beluga.cli.schedules import cmd_schedule  # noqa: F401 - `beluga schedule ...`, dispatched by name
from beluga.cli.target import Target
from beluga.core import driver as drv
from beluga.core.definitions import registry
from beluga.core.records import Signal, WorkflowState, WorkflowStatus
from beluga.executors.base import WorkflowOptions

out = print


def emit_json(data: Any) -> None:
    out(json.dumps(data, ensure_ascii=False, indent=2))


def parse_json(text: str | None, option: str) -> Any:
    """A JSON value given on the command line (tags such as {"$tuple": [...]} allowed, as `export` writes)."""
    if text is None:
        return None
    try:
        return history_json.from_jsonable(json.loads(text))
    except (json.JSONDecodeError, ValueError) as exc:
        raise CLIError(f"{option} is not valid JSON ({exc}): {text[:60]!r}", EXIT_USAGE) from None


def parse_since(text: str | None, option: str = "--since") -> float | None:
    """`--since`: an ISO 8601 time (UTC unless it names an offset) or an age such as 90s, 15m, 1h, 2d, 1w."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(f"{option} {text!r}: give an ISO time (2024-05-01T10:00) or an age (30m, 2h, 7d)",
                       EXIT_USAGE) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def summary_json(state: WorkflowState) -> dict[str, Any]:
    return {"workflow_id": state.workflow_id, "run_id": state.run_id, "workflow_type": state.workflow_type,
            "status": state.status.value, "created_at": render.iso(state.created_at),
            "updated_at": render.iso(state.updated_at), "events": len(state.history),
            "error": render.error_line(state.error), "stuck": bool(state.status.is_open and state.error),
            "search_attributes": history_json.to_jsonable(state.search_attributes),
            "memo": history_json.to_jsonable(state.memo)}


# --- list -------------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace, target: Target) -> int:
    query = RunQuery(status=WorkflowStatus(args.status) if args.status else None, workflow_type=args.type,
                     id_prefix=args.prefix, stuck=args.stuck, archives=args.all, where=where_of(args.where))
    if args.limit < 1:
        raise CLIError("--limit must be 1 or more", EXIT_USAGE)
    page = list_page(target.store, query, limit=args.limit, cursor=args.cursor, since=parse_since(args.since))
    if args.json:
        emit_json([summary_json(s) for s in page.runs])
    else:
        paint = render.Paint.for_stream(sys.stdout)
        rows = [[s.workflow_id, s.workflow_type, paint.status(s), render.when(s.created_at),
                 render.when(s.updated_at), str(len(s.history)), (render.error_line(s.error) or "")[:70]]
                for s in page.runs]
        headers = ["WORKFLOW ID", "TYPE", "STATUS", "STARTED", "UPDATED", "EVENTS", "ERROR"]
        if any(s.search_attributes for s in page.runs):  # a column only where some run has any
            headers.append("SEARCH ATTRIBUTES")
            for row, s in zip(rows, page.runs, strict=True):
                row.append(render.one_line(attributes_line(s.search_attributes))[:80])
        out(render.table(headers, rows))
        if not rows:
            out("(no runs match)")
    for name, cursor in (("older", page.older), ("newer", page.newer)):  # apart from the rows, for scripts too
        if cursor:
            print(f"{name}: --cursor {cursor}", file=sys.stderr)
    return 0


# --- show -------------------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace, target: Target) -> int:
    state = target.load(args.workflow_id)
    wait = waiting(state, untaken=target.untaken) if state.status.is_open else None
    earlier = earlier_runs(target.store, state.workflow_id)
    if args.json:
        data = summary_json(state)
        data.update(input=history_json.to_jsonable(state.input), result=history_json.to_jsonable(state.result),
                    error=state.error, queue=state.queue, parent=state.parent)
        if wait is not None:
            data["waiting"] = {
                "activities": [{**a, "not_before": render.iso(a["not_before"])} for a in wait.activities],
                "timers": [{"seq": t["seq"], "fire_at": render.iso(t["fire_at"])} for t in wait.timers],
                "children": wait.children, "deadline": render.iso(wait.deadline),
                "signals": list(wait.code.waiting_for_signals) if wait.code else None,
                "buffered_signals": wait.code.buffered_signals if wait.code else None,
                "code_error": wait.code_error}
        data["earlier_runs"] = [{"workflow_id": s.workflow_id, "run_id": s.run_id, "status": s.status.value}
                                for s in earlier]
        data["history"] = [history_json.event_to_json(ev) for ev in state.history]
        emit_json(data)
        return 0
    paint = render.Paint.for_stream(sys.stdout)
    lines = [f"workflow  {state.workflow_id}", f"type      {state.workflow_type}", f"run       {state.run_id}",
             f"status    {paint.status(state, long=True)}",
             f"started   {render.when(state.created_at)}", f"updated   {render.when(state.updated_at)}",
             f"input     {render.value(state.input, 200)}"]
    if state.status is WorkflowStatus.COMPLETED:
        lines.append(f"result    {render.value(state.result, 200)}")
    if state.error:
        lines.append(f"error     {render.error_line(state.error)}")
    if state.parent:
        lines.append(f"parent    {state.parent.get('workflow_id')} (seq {state.parent.get('seq')})")
    if state.search_attributes:
        lines.append(f"search    {attributes_line(state.search_attributes)}")
    if state.memo is not None:
        lines.append(f"memo      {render.value(state.memo, 200)}")
    if wait is not None:
        lines.append("waiting on")
        lines.extend(render.waiting_lines(wait))
    if earlier:
        lines.append("earlier runs (retried)")
        lines.extend(f"  {s.workflow_id}  {s.status.value}  run {s.run_id}  started {render.when(s.created_at)}"
                     for s in earlier)
    lines.append(f"history   {len(state.history)} events, from {render.iso(state.history[0].timestamp)}"
                 if state.history else "history   (empty)")
    lines.extend(render.timeline(state.history))
    out("\n".join(lines))
    return follow(target, state, args.interval, paint) if args.follow else 0


def follow(target: Target, state: WorkflowState, interval: float, paint: render.Paint) -> int:
    """`show --follow`: print the run's events as they are appended (the store polled every `interval`
    seconds) until it closes; a continue-as-new is followed into the new run. Exits 0 when the run
    completed, else 1."""
    start = state.history[0].timestamp if state.history else None
    run_id, seen = state.run_id, state.version
    while True:
        summary = target.store.load_summary(state.workflow_id)  # before the events: a close is never missed
        if summary is None:
            raise CLIError(f"workflow {state.workflow_id} was deleted while it was followed")
        if summary.run_id != run_id:
            out(f"new run {summary.run_id} (continued as new)", flush=True)
            run_id, seen, start = summary.run_id, 0, None
        events = target.store.history(state.workflow_id, after=seen)
        if events:
            start = start if start is not None else events[0].timestamp
            out("\n".join(render.timeline(events, start=start, width=len(str(events[-1].id)))), flush=True)
            seen = events[-1].id
        if not summary.status.is_open:  # closed before the events were read: they are all printed
            out(f"status    {paint.status(summary, long=True)}", flush=True)
            return 0 if summary.status is WorkflowStatus.COMPLETED else EXIT_FAILED
        time.sleep(interval)


# --- start, signal, query, cancel, terminate ------------------------------------------------------------
def cmd_start(args: argparse.Namespace, target: Target) -> int:
    payload = parse_json(args.input, "--input")
    target.need_code(args.workflow_type, "start")
    attrs = where_of(args.attr) or {}
    if any(not isinstance(v, (str, int, float, bool, datetime)) for v in attrs.values()):
        raise CLIError("--attr takes NAME=VALUE (a range is for list --where)", EXIT_USAGE)
    options = WorkflowOptions(id=args.id or str(uuid.uuid4()), input=payload, timeout=args.timeout,
                              queue=args.queue, search_attributes=attrs or None,
                              memo=parse_json(args.memo, "--memo"), priority=args.priority)
    handle = target.executor().execute(args.workflow_type, options)
    data: dict[str, Any] = {"workflow_id": handle.id, "run_id": handle.run_id}
    if args.wait is not None:
        state = _wait_for(target, handle.id, args.wait)
        data["status"] = state.status.value
        data["result"] = history_json.to_jsonable(state.result)
        data["error"] = render.error_line(state.error)
    else:
        _settle(target, handle.id, args)
    if args.json:
        emit_json(data)
    else:
        out(f"started {handle.id} (run {handle.run_id})")
        if "status" in data:
            out(f"{data['status']}: " + (render.value(state.result, 400) if data["status"] == "completed"
                                         else str(data["error"] or "")))
    return 0 if data.get("status", "completed") == "completed" else EXIT_FAILED


def _wait_for(target: Target, workflow_id: str, timeout: float) -> WorkflowState:
    try:
        return target.executor().wait_closed(workflow_id, timeout or None)
    except TimeoutError:
        raise CLIError(f"workflow {workflow_id} still running after {timeout:g}s (--wait)") from None


def cmd_signal(args: argparse.Namespace, target: Target) -> int:
    payload = parse_json(args.payload, "--payload")
    state = open_run(target, args.workflow_id, "signal")
    target.need_code(state.workflow_type, "signal")
    target.executor().signal(args.workflow_id, Signal(args.name, payload, sender_id="beluga-cli"),
                             identity=operator())
    _settle(target, args.workflow_id, args)
    out(f"signalled {args.workflow_id}: {args.name}")
    return 0


def _call_args(args: argparse.Namespace) -> list[Any]:
    """`--args`: a JSON list of arguments, or one value."""
    parsed = parse_json(args.args, "--args")
    return [] if parsed is None else parsed if isinstance(parsed, list) else [parsed]


def cmd_update(args: argparse.Namespace, target: Target) -> int:
    state = open_run(target, args.workflow_id, "update")
    target.need_code(state.workflow_type, "update")
    result = target.executor().update(args.workflow_id, args.name, *_call_args(args), update_id=args.id,
                                      wait=not args.no_wait, timeout=args.timeout, identity=operator())
    _settle(target, args.workflow_id, args)
    out(render.dumps(result))
    return 0


def cmd_query(args: argparse.Namespace, target: Target) -> int:
    query_args = _call_args(args)
    if target.remote:
        result = target.executor().query(args.workflow_id, args.name, *query_args)
    else:
        state = target.load(args.workflow_id)
        if args.name == "status":
            result = state.status
        elif args.name == "result":
            result = state.result if state.status is WorkflowStatus.COMPLETED else None
        else:  # a read-only replay here: a query never runs or records anything
            target.need_code(state.workflow_type, f"query {args.name!r}")
            instance = drv.read_only(state, registry.workflow, check_payload=lambda v: None)
            try:
                result = instance.query(args.name, *query_args)
            finally:
                instance.close()
    if isinstance(result, WorkflowStatus):
        result = result.value
    out(render.dumps(result))
    return 0


def cmd_cancel(args: argparse.Namespace, target: Target) -> int:
    state = open_run(target, args.workflow_id, "cancel")
    target.need_code(state.workflow_type, "cancel (the workflow's cleanup runs here)")
    target.executor().cancel(args.workflow_id, identity=operator())
    _settle(target, args.workflow_id, args)
    out(f"cancel requested for {args.workflow_id}")
    return 0


def cmd_terminate(args: argparse.Namespace, target: Target) -> int:
    open_run(target, args.workflow_id, "terminate")
    target.executor().terminate(args.workflow_id, args.reason or "", identity=operator())
    out(f"terminated {args.workflow_id}" + (f": {args.reason}" if args.reason else ""))
    return 0


def _settle(target: Target, workflow_id: str, args: argparse.Namespace) -> None:
    """In-process: carry the run forward here until it parks, then say what it waits on."""
    if target.remote:
        return
    settled = target.settle(args.wait_timeout)
    state = target.store.load(workflow_id)
    if state is None or not state.status.is_open:
        return
    w = waiting(state)
    if not settled:
        print(f"beluga: note: {workflow_id} still had work running after {args.wait_timeout:g}s; an attempt cut "
              "short here is retried when an executor on this store recovers it", file=sys.stderr)
    elif w.timers or any(a["state"] != "running" for a in w.activities):
        due = min([t["fire_at"] for t in w.timers] + [a["not_before"] or 0 for a in w.activities])
        print(f"beluga: note: {workflow_id} waits until {render.when(due)}; the in-process executor fires it "
              "in a process that drives this store (an executor on it resumes open runs as it starts)",
              file=sys.stderr)


# --- retry ------------------------------------------------------------------------------------------------
def cmd_retry(args: argparse.Namespace, target: Target) -> int:
    retried = retry_run(target, args.workflow_id, operator())
    _settle(target, retried.handle.id, args)
    if args.json:
        emit_json({"workflow_id": retried.handle.id, "run_id": retried.handle.run_id,
                   "previous_run_id": retried.previous.run_id, "previous_run_kept_as": retried.kept})
    else:
        out(f"retried {retried.handle.id}: new run {retried.handle.run_id}; the {retried.previous.status.value} run "
            f"{retried.previous.run_id} is kept as {retried.kept}")
    return 0


# --- the web console --------------------------------------------------------------------------------------
def cmd_console(args: argparse.Namespace, target: Target) -> int:
    from beluga.console import Console
    from beluga.console.server import serve
    from beluga.settings import Settings

    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CLIError(f"cannot read the token file {args.token_file}: {exc.strerror or exc}", EXIT_USAGE) from None
        if not token:
            raise CLIError(f"the token file {args.token_file} is empty", EXIT_USAGE)
    elif not args.read_only:
        token = target.settings.console_token if target.kind == "celery" else Settings.load().console_token
    if args.read_only:
        token = None
    app = Console(target, token=token)
    mode = "signal, cancel, terminate and retry need the token" if token else "read-only (no token)"
    try:
        serve(app, args.host, args.port,
              banner=f"beluga console: http://{args.host}:{{port}}/ on {target.kind} {target.url}; {mode}")
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


# --- export and replay ------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace, target: Target) -> int:
    state = target.load(args.workflow_id)
    text = history_json.dumps(history_json.export(state))
    if args.output and args.output != "-":
        path = Path(args.output)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"exported {state.workflow_id} ({len(state.history)} events) to {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_replay(args: argparse.Namespace, imports: str | None) -> int:
    from beluga.testing.replayer import Replayer

    paths = history_json.files(args.paths)
    if not paths:
        raise CLIError("no history files found in " + ", ".join(args.paths), EXIT_USAGE)
    results = Replayer(imports or "").replay(*paths)
    if args.json:
        emit_json([{"source": r.source, "workflow_type": r.workflow_type, "workflow_id": r.workflow_id,
                    "ok": r.ok, "mismatch": r.mismatch, "position": r.position,
                    "recorded": getattr(r.error, "recorded", None), "asked": getattr(r.error, "asked", None),
                    "error": None if r.ok else render.one_line(str(r.error))} for r in results])
    else:
        for r in results:
            out(r.describe())
            if r.mismatch:
                out("          " + render.one_line(str(r.error)))
        bad = sum(not r.ok for r in results)
        out(f"{len(results) - bad} of {len(results)} histories match the code"
            + (f"; {bad} do not" if bad else ""))
    if any(not r.ok and not r.mismatch for r in results):
        return EXIT_USAGE
    return EXIT_FAILED if any(r.mismatch for r in results) else 0


def cmd_temporal_worker(args: argparse.Namespace, imports: str | None, settings: Any = None) -> int:
    """Import the workflow modules and run a Temporal worker for them until interrupted."""
    import asyncio

    from beluga.settings import Settings
    from beluga.testing.replayer import import_modules

    settings = settings or Settings.load()
    modules = import_modules(imports if imports else list(settings.imports))
    from beluga.temporal.executor import Connection, run_worker

    connection = Connection.from_settings(settings, target=args.target, namespace=args.namespace)
    queue = args.task_queue or settings.temporal_task_queue
    secured = " (TLS)" if connection.tls or connection.tls_ca or connection.tls_cert else ""
    out(f"beluga temporal-worker: {connection.target}{secured} namespace {connection.namespace!r} task queue "
        f"{queue!r}, modules {', '.join(modules) or '(none)'}")
    sys.stdout.flush()
    asyncio.run(run_worker(connection, queue, activity_threads=args.activity_threads))
    return 0
