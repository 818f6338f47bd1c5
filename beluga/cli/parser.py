"""The command line: `beluga [--store URL | --executor celery] [--imports MODS] COMMAND ...`.

The target options may come before or after the subcommand (`beluga --store X list` and
`beluga list --store X` are the same)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from beluga.cli.errors import EXIT_USAGE
from beluga.core.records import WorkflowStatus

DESCRIPTION = """Operate Beluga workflow runs: list and inspect them, start, signal, query, cancel,
terminate, retry and reset them (one at a time, or a filter's worth with `batch`), export their histories
and replay histories against the current code."""

EPILOG = """where the runs are:
  --store sqlite:///beluga.db     the in-process executor's SQLite file (relative; //// for absolute)
  --store redis://host:6379/0     an in-process RedisStore (?prefix=... for another key prefix)
  --store nats://host:4222        a NATS JetStream store (?prefix=...); pip install 'beluga-workflows[nats]'
  --store kafka://host:9092       a Kafka store (?prefix=...&topic=...); pip install 'beluga-workflows[kafka]'
  --store dapr://host:3500        a Dapr state store (?store=statestore&prefix=...; dapr+https:// for TLS)
  --executor celery               the Celery fleet, settings from BELUGA_* / config/beluga.env
  --executor temporal             a Temporal server (BELUGA_TEMPORAL_TARGET, _NAMESPACE, _TASK_QUEUE)
  BELUGA_STORE=URL                the default for --store

With --store, start/signal/cancel/retry run the workflow's code in this process (--imports names its
modules) until the run parks, and query answers from a read-only replay; with --executor celery the
fleet does the work and the command needs no workflow code.

Exit status: 0 done; 1 the operation failed (or `replay` found a mismatch); 2 a usage or input error."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block."""
        self.exit(EXIT_USAGE, f"beluga: error: {message} (see {self.prog} --help)\n")


def _target_options(p: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS  # a subcommand's copy must not hide the top-level value
    p.add_argument("--store", metavar="URL", default=default, help="an in-process store (see below)")
    p.add_argument("--executor", choices=["default", "celery", "temporal"], default=default,
                   help="celery: the fleet's client; temporal: a Temporal server's client (BELUGA_TEMPORAL_*); "
                        "default: the in-process executor on --store")
    p.add_argument("--imports", metavar="MOD[,MOD]", default=default,
                   help="modules that define the workflows (default: BELUGA_IMPORTS)")


def build(prog: str = "beluga") -> Parser:
    parser = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    _target_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name: str, help: str, *, json: bool = True, drives: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _target_options(p, top=False)
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if drives:
            p.add_argument("--wait-timeout", type=float, default=60.0, metavar="SECONDS",
                           help="in-process: how long to carry the run forward here before exiting (60)")
        return p

    p = command("list", "list runs, newest first")
    p.add_argument("--status", choices=[s.value for s in WorkflowStatus])
    p.add_argument("--type", metavar="WORKFLOW_TYPE")
    p.add_argument("--since", metavar="WHEN", help="started at or after: ISO time (UTC) or an age: 30m, 2h, 7d")
    p.add_argument("--prefix", metavar="ID_PREFIX", help="only the runs whose workflow id starts with this")
    p.add_argument("--stuck", action="store_true",
                   help="only the runs held stuck (open, but their code or history cannot carry them on)")
    p.add_argument("--where", action="append", default=[], metavar="COND",
                   help="by search attribute, repeatable (all hold): name=value, or name>=value (>, <=, <); "
                        'a value is a number, true/false, an ISO time, or text ("10" for the text 10)')
    p.add_argument("--limit", type=int, default=50, help="at most this many: a page (50)")
    p.add_argument("--cursor", metavar="CURSOR", help="the page a previous list named (on stderr: older, newer)")
    p.add_argument("--all", action="store_true", help="include the kept copies of retried runs (<id>/runs/<n>)")

    p = command("show", "a run: status, error, what it waits on, its history as a timeline")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("-f", "--follow", action="store_true",
                   help="then print its events as they are recorded, until the run closes")
    p.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                   help="--follow: how often to look for new events (0.5)")

    p = command("start", "start a run of a workflow type", drives=True)
    p.add_argument("workflow_type", metavar="TYPE")
    p.add_argument("--input", metavar="JSON", help="the workflow's input, as JSON")
    p.add_argument("--id", help="the workflow id (default: a new uuid)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="bound on the whole run")
    p.add_argument("--queue", help="the Celery queue of its tasks")
    p.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                   help="a search attribute, repeatable (values typed as in list --where)")
    p.add_argument("--memo", metavar="JSON", help="a memo shown with the run, as JSON")
    p.add_argument("--priority", type=int, choices=range(1, 6), metavar="1-5",
                   help="its activity calls' priority: 1 highest, 5 lowest (default 3)")
    p.add_argument("--wait", type=float, nargs="?", const=0.0, metavar="SECONDS",
                   help="wait for the result (at most SECONDS) and exit 1 unless it completes")

    p = command("signal", "send a signal to an open run", json=False, drives=True)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("name")
    p.add_argument("--payload", metavar="JSON")

    p = command("query", "ask a run's query handler (or the built-in status/result)", json=False)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("name")
    p.add_argument("--args", metavar="JSON", help="a JSON list of arguments (or one value)")

    p = command("update", "send an update to an open run and print its handler's result", json=False, drives=True)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("name")
    p.add_argument("--args", metavar="JSON", help="a JSON list of arguments (or one value)")
    p.add_argument("--id", metavar="UPDATE_ID", help="the update id: a retry with the same id takes effect once "
                   "and prints the first outcome (default: a new id)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop waiting for the result after SECONDS")
    p.add_argument("--no-wait", action="store_true", help="print the update id once accepted; do not wait")

    p = command("cancel", "request cancellation; the workflow may clean up", json=False, drives=True)
    p.add_argument("workflow_id", metavar="ID")

    p = command("terminate", "close an open run at once, canceled; no workflow code runs", json=False)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("--reason", metavar="TEXT")

    p = command("retry", "run a failed, timed-out or canceled run again from the start, same id and input "
                         "(the old run is kept as <id>/runs/<n>)", drives=True)
    p.add_argument("workflow_id", metavar="ID")

    from beluga.cli.reset import add_parser as add_reset_parser

    add_reset_parser(command)

    from beluga.cli.batch import add_parser as add_batch_parser

    add_batch_parser(command)

    p = command("export", "a run's history as JSON", json=False)
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    p = command("console", "serve the web console: runs, their histories, and (with a token) signal, cancel, "
                           "terminate and retry buttons", json=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (8080; 0: any free port)")
    p.add_argument("--token-file", metavar="FILE",
                   help="read the token that allows writes from FILE (default: BELUGA_CONSOLE_TOKEN; none: read-only)")
    p.add_argument("--read-only", action="store_true", help="allow no writes, even with a token configured")

    p = command("temporal-worker", "run a Temporal worker for the workflows and activities of --imports "
                                   "(the 'temporal' executor)", json=False)
    p.add_argument("--target", help="the Temporal server, host:port (BELUGA_TEMPORAL_TARGET, 127.0.0.1:7233)")
    p.add_argument("--namespace", help="Temporal namespace (BELUGA_TEMPORAL_NAMESPACE, default)")
    p.add_argument("--task-queue", help="task queue to poll (BELUGA_TEMPORAL_TASK_QUEUE, beluga)")
    p.add_argument("--activity-threads", type=int, default=16, help="activities run at once (16)")

    from beluga.cli.schedules import add_parser as add_schedule_parser

    add_schedule_parser(sub, command)

    p = command("replay", "replay exported histories against the current code (exit 1 on a mismatch)")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="history files, or directories of *.json")
    return parser


def prog_name() -> str:
    return "beluga" if not sys.argv or not sys.argv[0].endswith("__main__.py") else "python -m beluga"
