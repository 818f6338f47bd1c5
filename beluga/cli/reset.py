"""`beluga reset ID --to EVENT|last-good|first`: a new run of the same id from a workflow-task boundary
of the current one, on the current code (`DurableExecutor.reset`), and what it threw away."""

from __future__ import annotations

import argparse
import json
from typing import Any

from beluga.cli.errors import EXIT_USAGE, CLIError
from beluga.cli.target import Target
from beluga.core.reset import ResetError
from beluga.resets import ResetResult


def add_parser(command: Any) -> None:
    p = command("reset", "start a new run of ID from a workflow-task boundary of its history, on the current code "
                         "(the old run is kept as <id>/runs/<n>; an open run is terminated first)", drives=True)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("--to", default="last-good", metavar="EVENT|last-good|first",
                   help="an event id (an input the code reacted to), last-good (before the step that led to the "
                        "first failure; the default) or first (right after the start)")
    p.add_argument("--no-reapply-signals", action="store_true",
                   help="drop the signals recorded after the point instead of applying them again")


def reset_one(target: Target, workflow_id: str, to: str, identity: str, reapply: bool = True) -> ResetResult:
    """The reset the command and the console (and `beluga batch reset`) make; usage errors as `CLIError`."""
    state = target.store.load_summary(workflow_id)
    if state is None:
        raise CLIError(f"no workflow with id {workflow_id!r} in {target.url}")
    target.need_code(state.workflow_type, "reset")
    try:
        return target.executor().reset(workflow_id, to, identity=identity, reapply_signals=reapply)
    except ResetError as exc:
        raise CLIError(f"cannot reset {workflow_id}: {exc}", EXIT_USAGE) from None


def describe(done: ResetResult) -> str:
    """What the reset did and threw away, for a person."""
    lines = [f"reset {done.workflow_id} to event #{done.point}: new run {done.run_id}; the old run "
             f"{done.previous_run_id} is kept as {done.kept}" + (" (it was open: terminated first)"
                                                                  if done.terminated else "")]
    lines.append(f"  dropped {done.dropped_events} event(s) after #{done.point}")
    if done.discarded_activities:
        names = ", ".join(f"{a['name']} (seq {a['seq']})" for a in done.discarded_activities)
        lines.append(f"  activity results thrown away: {names}")
    if done.reapplied_signals:
        lines.append(f"  signals applied again: {', '.join(done.reapplied_signals)}")
    if done.dropped_updates:
        lines.append(f"  updates dropped: {', '.join(done.dropped_updates)}")
    if done.dropped_cancel:
        lines.append("  a cancel request after the point was dropped")
    return "\n".join(lines)


def cmd_reset(args: argparse.Namespace, target: Target) -> int:
    from beluga.cli.commands import _settle, out
    from beluga.cli.runs import operator

    done = reset_one(target, args.workflow_id, args.to, operator(), not args.no_reapply_signals)
    _settle(target, done.workflow_id, args)
    out(json.dumps(done.to_json(), indent=2) if args.json else describe(done))
    return 0
