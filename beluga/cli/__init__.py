"""`beluga`: the operator's command (also `python -m beluga` and `celery -A beluga beluga`).

See docs/cli.md. Every error is one line on stderr and a non-zero exit status; set BELUGA_DEBUG=1 to
see the traceback of an unexpected one.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from beluga.cli.errors import EXIT_FAILED, EXIT_USAGE, CLIError

__all__ = ["main", "CLIError"]

_COMMANDS = {"list": "cmd_list", "show": "cmd_show", "start": "cmd_start", "signal": "cmd_signal",
             "query": "cmd_query", "update": "cmd_update", "cancel": "cmd_cancel", "terminate": "cmd_terminate",
             "retry": "cmd_retry", "export": "cmd_export", "console": "cmd_console", "schedule": "cmd_schedule",
             "reset": "cmd_reset", "batch": "cmd_batch"}


def main(argv: Sequence[str] | None = None, *, settings: Any = None, prog: str | None = None) -> int:
    """Run one command; returns the exit status. `settings` (a `beluga.settings.Settings`) replaces the
    environment's for `--executor celery` (the Celery sub-command passes its app's)."""
    from beluga.cli import parser as cli_parser

    parser = cli_parser.build(prog or cli_parser.prog_name())
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    _quiet_logs()
    target = None
    try:
        from beluga.cli import commands

        if args.command == "replay":
            return commands.cmd_replay(args, args.imports if args.imports is not None
                                       else os.environ.get("BELUGA_IMPORTS"))
        if args.command == "temporal-worker":
            return commands.cmd_temporal_worker(args, args.imports if args.imports is not None
                                                else os.environ.get("BELUGA_IMPORTS"), settings)
        from beluga.cli.target import Target

        target = Target(store_url=args.store or os.environ.get("BELUGA_STORE"), executor=args.executor,
                        imports=args.imports, settings=settings, may_create=creates(args))
        return int(getattr(commands, _COMMANDS[args.command])(args, target))
    except KeyboardInterrupt:
        print("beluga: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `beluga list | head`
        return 0
    except Exception as exc:
        if os.environ.get("BELUGA_DEBUG"):
            raise
        message, code = describe(exc, target)
        print(f"beluga: error: {message}", file=sys.stderr)
        return code
    finally:
        if target is not None:
            try:
                target.close()
            except Exception:
                pass


def creates(args: Any) -> bool:
    """Whether the command may make the store it names: `start` and `schedule create`."""
    return bool(args.command == "start" or (args.command == "schedule" and args.action == "create"))


class _OneLine(logging.Formatter):
    """Log records from the engine (a stuck run, a failed hook) as one line each, without traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"beluga: log: {record.name} {record.levelname}: {record.getMessage()}".split())


def _quiet_logs() -> None:
    root = logging.getLogger()
    if root.handlers or os.environ.get("BELUGA_DEBUG"):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def describe(exc: BaseException, target: Any) -> tuple[str, int]:
    """One line for an error, and the exit status."""
    from beluga.cli.render import one_line
    from beluga.core.errors import WorkflowError
    from beluga.history_json import HistoryFormatError

    where = getattr(target, "url", None) or "the store"
    if isinstance(exc, CLIError):
        return one_line(str(exc)), exc.code
    if isinstance(exc, HistoryFormatError):
        return one_line(str(exc)), EXIT_USAGE
    if isinstance(exc, WorkflowError):
        return one_line(f"{exc.__class__.__name__}: {exc}"), EXIT_FAILED
    kind = f"{type(exc).__module__}.{type(exc).__name__}"
    if kind.startswith(("redis.", "valkey.")) and ("Connection" in kind or "Timeout" in kind):
        return one_line(f"cannot reach Redis at {where}: {exc}"), EXIT_FAILED
    if kind.startswith(("kombu.", "amqp.")) or "OperationalError" in kind:
        return one_line(f"cannot reach the Celery broker: {exc}"), EXIT_FAILED
    if kind.startswith("redis."):
        return one_line(f"Redis at {where} answered: {exc}"), EXIT_FAILED
    if kind.startswith("sqlite3."):
        return one_line(f"SQLite store {where}: {exc}"), EXIT_FAILED
    return one_line(f"{type(exc).__name__}: {exc} (BELUGA_DEBUG=1 shows the traceback)"), EXIT_FAILED
