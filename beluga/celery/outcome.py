"""What an activity task tells Celery (and so Flower) about its attempt, once Beluga has recorded it.

Beluga keeps its own retry accounting: the attempt's outcome is reported to the run's inbox and the
coordinator records it and decides what follows (the worker that ran the attempt computed the retry
delay from the activity's policy). Only after that report is durable does the task end, and it ends the
way the attempt did, so that Celery's task state and events say what happened:

- the attempt succeeded: the task returns the activity's result, as its repr cut to 1 KiB (`Shown`: the
  result itself is in the history; only Flower and Celery's log line show it, and a large one need not
  cross the pool's pipe), `task-succeeded`;
- it failed and another attempt follows: the task raises Celery's `Retry` carrying the activity's own
  exception (`task-retried`, state RETRY). When the next attempt is a Celery retry, `Task.retry()` has
  published it; when it waits in Beluga's durable timer set (backoffs past `CELERY_RETRY_LIMIT`), the
  `Retry` is raised without publishing anything;
- it failed and no attempt follows (non-retryable, or its attempts are spent): the task re-raises the
  activity's exception (`task-failed`, state FAILURE, with its traceback).

Raising here changes nothing for Beluga: the message is acknowledged either way (`acks_late`, Celery
acknowledges failed tasks), and the run's history already holds the outcome. The activity task is
declared to throw any `Exception`, so Celery logs these as expected outcomes (one INFO line) rather
than as a worker error with a traceback; the traceback is in the history and in Flower.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.exceptions import Retry
from celery.utils.saferepr import saferepr

from beluga.core.failure import from_failure

_local = threading.local()


def note_failure(exc: BaseException) -> None:
    """Keep the exception of the attempt running in this thread, for `settle` to raise once reported."""
    _local.exc = exc


def take_failure(failure: dict[str, Any] | None = None) -> BaseException:
    """The exception noted for this thread's attempt (rebuilt from its failure record when none was
    noted, or when it is not an ordinary `Exception`: a `SystemExit` must not end the pool process)."""
    exc = getattr(_local, "exc", None)
    _local.exc = None
    if isinstance(exc, Exception):
        return exc
    return from_failure(failure or {"type": "ActivityError", "message": "the attempt failed"})


class Shown:
    """A result as Flower and Celery's log show it: its repr, already cut to size."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[Any, ...]:
        return (Shown, (self.text,))


def settle(message: dict[str, Any], delay: float | None) -> Any:
    """End an activity task whose attempt has been reported (see the module's docstring): return the
    result, or raise `Retry` or the activity's exception. `message` is the inbox message reporting the
    attempt; `delay` the retry delay its worker computed (None: no retry)."""
    if message.get("ok"):
        _local.exc = None
        return Shown(saferepr(message.get("payload"), maxlen=1024))
    exc = take_failure(message.get("payload"))
    if delay is not None:
        raise Retry(f"attempt {message.get('attempt')} failed; Beluga retries it in {delay:g}s", exc, when=delay)
    raise exc


def configure(app: Celery) -> None:
    """Declare the activity task's own exceptions as expected outcomes (logged as one line by Celery)."""
    task = app.tasks["beluga.activity"]
    task.throws = (Exception,)
