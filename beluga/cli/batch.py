"""`beluga batch terminate|cancel|signal|reset|retry [filter] [--dry-run] [--rps N]`: one operation over
the runs a filter selects, with a progress bar, a rate limit, and resumable (beluga/cli/batch_jobs.py:
killed and run again with the same arguments, it goes on where it stopped and does each run once)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from beluga.cli.batch_jobs import (
    OPERATIONS,
    Act,
    BatchSpec,
    Journal,
    Pacer,
    Selection,
    Tally,
    batch_signal,
    default_dir,
    new_batch_id,
    run_batch,
    signalled_by,
)
from beluga.cli.errors import EXIT_FAILED, EXIT_USAGE, CLIError
from beluga.cli.runs import where_of
from beluga.cli.target import Target
from beluga.core.records import WorkflowStatus

FILTERS = ("status", "type", "prefix", "since", "until", "where")


def add_parser(command: Any) -> None:
    p = command("batch", "one operation over the runs a filter selects: dry run, progress, rate limit, and "
                         "resumable (run the same command again after an interruption)", drives=True)
    p.add_argument("operation", choices=OPERATIONS)
    p.add_argument("--status", choices=[s.value for s in WorkflowStatus])
    p.add_argument("--type", metavar="WORKFLOW_TYPE")
    p.add_argument("--prefix", metavar="ID_PREFIX", help="only the runs whose workflow id starts with this")
    p.add_argument("--since", metavar="WHEN", help="started at or after: ISO time (UTC) or an age: 30m, 2h, 7d")
    p.add_argument("--until", metavar="WHEN", help="started before: ISO time (UTC) or an age")
    p.add_argument("--where", action="append", metavar="COND", default=[],
                   help="by search attribute, repeatable, as `list --where` takes it (name=value, ...)")
    p.add_argument("--reason", metavar="TEXT", help="terminate: the reason recorded")
    p.add_argument("--name", metavar="SIGNAL", help="signal: the signal's name")
    p.add_argument("--payload", metavar="JSON", help="signal: its payload, as JSON")
    p.add_argument("--to", default="last-good", metavar="EVENT|last-good|first", help="reset: the point (last-good)")
    p.add_argument("--no-reapply-signals", action="store_true", help="reset: drop the signals after the point")
    p.add_argument("--dry-run", action="store_true", help="print how many runs it would act on, and do nothing")
    p.add_argument("--rps", type=float, default=20.0, metavar="N", help="at most N runs a second (20; 0: no limit)")
    p.add_argument("--new", action="store_true", help="a new batch, though one with these arguments ran before")
    p.add_argument("--batch-id", metavar="ID", help="resume this batch (printed when it began)")
    p.add_argument("--retry-failed", action="store_true", help="on resuming, act again on the runs that failed")
    p.add_argument("--state-dir", metavar="DIR", help="where batches keep their progress (BELUGA_BATCH_DIR, "
                                                       "else ~/.local/state/beluga/batches)")


def selection(args: argparse.Namespace) -> Selection:
    from beluga.cli.commands import parse_since

    f: dict[str, Any] = {}
    if args.status:
        f["status"] = WorkflowStatus(args.status)
    if args.type:
        f["workflow_type"] = args.type
    if args.prefix:
        f["id_prefix"] = args.prefix
    if args.where:
        f["where"] = where_of(args.where)
    sel = Selection(f, parse_since(args.since), parse_since(args.until, "--until"))
    if not (f or sel.since or sel.until):
        raise CLIError(f"say which runs: give a filter ({', '.join('--' + x for x in FILTERS)})", EXIT_USAGE)
    try:
        sel.workflow_filter()
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    return sel


def operation_args(args: argparse.Namespace) -> dict[str, Any]:
    from beluga.cli.commands import parse_json

    op = args.operation
    if op == "signal":
        if not args.name:
            raise CLIError("batch signal needs --name SIGNAL", EXIT_USAGE)
        return {"name": args.name, "payload": parse_json(args.payload, "--payload")}
    if op == "terminate":
        return {"reason": args.reason or ""}
    if op == "reset":
        return {"to": args.to, "reapply_signals": not args.no_reapply_signals}
    return {}


def make_act(target: Target, op: str, op_args: dict[str, Any], batch_id: str, identity: str) -> Act:
    """What the batch does to one run: a skip reason when there is nothing (more) to do, else None."""
    from beluga.cli.reset import reset_one
    from beluga.cli.runs import RETRYABLE, retry_run

    def act(workflow_id: str, run_id: str, maybe_acted: bool) -> str | None:
        state = target.store.load_summary(workflow_id)
        if state is None:
            return "gone from the store"
        if state.run_id != run_id:
            return (f"a new run {state.run_id} (made by an earlier try of this batch)" if maybe_acted
                    else f"another run {state.run_id} since it was selected")
        if op == "retry":
            if state.status not in RETRYABLE:
                return f"it is {state.status.value}: only failed, timed-out or canceled runs are retried"
            retry_run(target, workflow_id, identity)
        elif op == "reset":
            reset_one(target, workflow_id, op_args["to"], identity, op_args["reapply_signals"])
        elif not state.status.is_open:
            return f"already {state.status.value}"
        elif op == "terminate":
            target.executor().terminate(workflow_id, op_args["reason"], identity=identity)
        elif op == "cancel":
            target.need_code(state.workflow_type, "cancel (the workflow's cleanup runs here)")
            target.executor().cancel(workflow_id, identity=identity)
        else:
            signal = batch_signal(batch_id, workflow_id, op_args["name"], op_args["payload"])
            if maybe_acted and signalled_by(target.load(workflow_id), str(signal.sender_id)):
                return "signalled by an earlier try of this batch"
            target.executor().signal(workflow_id, signal, identity=identity)
        return None

    return act


class Progress:
    """A bar redrawn in place on a terminal; elsewhere a plain line every tenth of the way (and at least
    every 5 seconds)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, tty: bool | None = None) -> None:
        self.label, self.stream = label, stream
        self.tty = stream.isatty() if tty is None else tty
        self.last_at, self.last_step = 0.0, -1

    def __call__(self, t: Tally) -> None:
        now = time.monotonic()
        counts = f"{t.finished}/{t.total}  done {t.done}  skipped {t.skipped}  failed {t.failed}"
        if self.tty:
            if now - self.last_at < 0.1 and t.finished < t.total:
                return
            filled = int(30 * t.finished / max(t.total, 1))
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {counts}")
        else:
            step = 10 * t.finished // max(t.total, 1)
            if step == self.last_step and now - self.last_at < 5 and t.finished < t.total:
                return
            self.last_step = step
            self.stream.write(f"{self.label}: {counts}\n")
        self.last_at = now
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def cmd_batch(args: argparse.Namespace, target: Target) -> int:
    from beluga.cli.runs import operator

    op_args = operation_args(args)
    spec = BatchSpec(args.operation, op_args, selection(args), target.url)
    journal = Journal(Path(args.state_dir) if args.state_dir else default_dir(),
                      args.batch_id or new_batch_id(spec, args.new))
    if args.dry_run:
        return _dry_run(args, target, spec, journal)
    if not journal.exists():
        if args.batch_id:
            raise CLIError(f"no batch {args.batch_id} in {journal.head_path.parent}", EXIT_USAGE)
        journal.create(spec, [(s.workflow_id, s.run_id) for s in spec.selection.runs(target.store)])
        print(f"batch {journal.id}: {args.operation} {len(journal.runs())} run(s); if interrupted, run the same "
              f"command again to go on (progress in {journal.log_path})", file=sys.stderr)
    else:
        print(f"batch {journal.id}: resuming", file=sys.stderr)
    progress = Progress(f"batch {args.operation}")
    act = make_act(target, args.operation, op_args, journal.id, operator())
    tally = run_batch(journal, act, Pacer(args.rps), progress, args.retry_failed)
    progress.end()
    if tally.done and not target.remote and args.operation != "terminate":
        target.settle(args.wait_timeout)
    return _report(args, journal, tally)


def _dry_run(args: argparse.Namespace, target: Target, spec: BatchSpec, journal: Journal) -> int:
    from beluga.cli.commands import out

    if journal.exists():
        states = journal.states()
        ids = [w for w, _ in journal.runs() if states.get(w, {}).get("s") not in ("done", "skipped", "failed")]
        what = f"batch {journal.id} (begun earlier) has {len(ids)} run(s) left"
    else:
        ids = [s.workflow_id for s in spec.selection.runs(target.store)]
        what = f"batch {args.operation} would act on {len(ids)} run(s)"
    if args.json:
        out(json.dumps({"batch_id": journal.id, "operation": args.operation, "count": len(ids), "runs": ids}))
    else:
        out(f"dry run: {what}" + "".join(f"\n  {w}" for w in ids[:20]) + ("\n  ..." if len(ids) > 20 else ""))
    return 0


def _report(args: argparse.Namespace, journal: Journal, tally: Tally) -> int:
    from beluga.cli.commands import out

    states = journal.states()
    whole = {s: sum(e.get("s") == s for e in states.values()) for s in ("done", "skipped", "failed")}
    failures = {w: e.get("d", "") for w, e in states.items() if e.get("s") == "failed"}
    if args.json:
        out(json.dumps({"batch_id": journal.id, "operation": args.operation, "total": tally.total, **whole,
                        "this_time": {"done": tally.done, "skipped": tally.skipped, "failed": tally.failed},
                        "failures": failures}, indent=2))
    else:
        out(f"batch {journal.id}: {args.operation} over {tally.total} run(s): done {whole['done']}, skipped "
            f"{whole['skipped']}, failed {whole['failed']}" + (f" ({tally.earlier} finished earlier)"
                                                                 if tally.earlier else ""))
        for w, why in list(failures.items())[:20]:
            out(f"  failed {w}: {why}")
    return EXIT_FAILED if whole["failed"] else 0
