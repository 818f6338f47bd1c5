"""Log records about a run carry the run's identity as record attributes.

While an executor works on a run, and while an activity attempt runs, the run's identity is in a
context variable; `RunContextFilter` copies it onto each log record as attributes, so handlers and
formatters (a JSON formatter, a log shipper) get them without parsing messages:

| attribute | value |
|---|---|
| `workflow_id`, `run_id` | the run (`run_id` once the executor has loaded the run) |
| `workflow_type` | its workflow type, where the executor knows it |
| `activity`, `seq`, `attempt` | inside an activity attempt (and while its worker reports it) |
| `beluga` | all of the above as text for plain formats: ` [workflow order-1 run 2b0c... seq 1 attempt 2]`, or `""` |

Beluga's own loggers (`beluga.*`, made by `get_logger`) carry the filter, so every record they create
about a run has the attributes whichever handler receives it. To give the same attributes to other
records made while a run is being worked on (your activities' own log lines, Celery's task lines), add
the filter to your handler: `handler.addFilter(beluga.logs.RunContextFilter())`. A record made outside
any run gets the attributes as None (`beluga` as `""`), so a format such as
`"%(message)s%(beluga)s"` or `"%(workflow_id)s %(message)s"` works for every record.

`celery -A beluga worker` logs in the format `[%(asctime)s: %(levelname)s/%(processName)s] %(message)s%(beluga)s`
(with the filter on its handlers), so each line about a run names it.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

FIELDS = ("workflow_id", "run_id", "workflow_type", "activity", "seq", "attempt")
TEXT_FIELD = "beluga"
WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s%(beluga)s"

_run: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("beluga_log_run", default=None)


def current() -> dict[str, Any]:
    """The identity of the run being worked on in this context (empty outside any run)."""
    from beluga.activity import _current as current_activity

    fields = dict(_run.get() or {})
    info = current_activity.get()
    if info is not None:
        fields.update(workflow_id=info.workflow_id, run_id=info.run_id, activity=info.activity_name,
                      seq=info.seq, attempt=info.attempt)
    return fields


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Start working on a run in this context: `fields` replace whatever was bound; `unbind` undoes it."""
    return _run.set({k: v for k, v in fields.items() if v is not None})


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _run.reset(token)


def update(**fields: Any) -> None:
    """Add what became known about the run being worked on (its run id, once loaded)."""
    bound = _run.get()
    if bound is not None:
        _run.set({**bound, **{k: v for k, v in fields.items() if v is not None}})


class bound:  # noqa: N801 - used as a function: `with logs.bound(workflow_id=...):`
    """`bind` for the block: a class, not a generator-based context manager, since coordinators enter one
    per step and a generator's set-up cost more than the binding."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = bind(**self._fields)

    def __exit__(self, *exc: object) -> None:
        _run.reset(self._token)


def describe(fields: dict[str, Any]) -> str:
    """The fields as text for a plain log format: ` [workflow W run R activity A seq S attempt N]`."""
    if not fields.get("workflow_id"):
        return ""
    parts = [f"workflow {fields['workflow_id']}"]
    for key, label in (("run_id", "run"), ("activity", "activity"), ("seq", "seq"), ("attempt", "attempt")):
        if fields.get(key) is not None:
            parts.append(f"{label} {fields[key]}")
    return " [" + " ".join(parts) + "]"


class RunContextFilter(logging.Filter):
    """Adds `workflow_id`, `run_id`, `workflow_type`, `activity`, `seq`, `attempt` and `beluga` (text) to
    each record, from the run being worked on when the record passes; never drops a record. Attributes
    a record already has (given with `extra=`) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, TEXT_FIELD, None) is not None:
            return True  # filled in already (by a Beluga logger, as it was made)
        fields = current()
        for key in FIELDS:
            if not hasattr(record, key):
                setattr(record, key, fields.get(key))
        setattr(record, TEXT_FIELD, describe({k: getattr(record, k, None) for k in FIELDS}))
        return True


_FILTER = RunContextFilter()


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with `RunContextFilter` on it: Beluga's loggers."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def add_to_handlers(logger: logging.Logger) -> None:
    """Put the filter on `logger`'s handlers (once each): for a log format that names `%(beluga)s`."""
    for handler in logger.handlers:
        if not any(isinstance(f, RunContextFilter) for f in handler.filters):
            handler.addFilter(RunContextFilter())
