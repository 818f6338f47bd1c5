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

Every attempt of an activity call shares one task id, so Flower shows one task per call, whose fields
each event overwrites, and a `task-succeeded` event leaves the `exception` and `traceback` of the last
`task-retried` in place. So the traceback of a `task-retried` or `task-failed` event is not Celery's own
(that of Beluga's `Retry`, raised by the task) but the attempts' (`tell_attempts`): every failed attempt
of the call so far, oldest first, each with its exception's traceback as recorded in the run's history,
the attempt that just failed last. A call that failed twice and then succeeded shows SUCCESS, its
result, and both failures. Its `exception` is the failed attempt's own exception.

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

from beluga.core.failure import from_failure, to_failure
from beluga.core.records import EventType
from beluga.logs import get_logger

log = get_logger("beluga.tasks")
_local = threading.local()
EARLIER_SHOWN = 10       # the earlier failed attempts an event's traceback names at most (the latest ones)
TRACEBACK_CUT = 4000     # characters kept of each earlier attempt's traceback (its end, which names the error)


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


def shown_exception(failure: dict[str, Any]) -> str:
    """A recorded failure as Celery shows an exception in its events and log lines: `Type('message')`."""
    return f"{failure.get('type', 'Exception')}({saferepr(failure.get('message', ''), maxlen=1024)})"


def attempts_traceback(earlier: list[dict[str, Any]], attempt: int, own: str) -> str:
    """The traceback a task event shows for the failed `attempt` (`own`: its exception's traceback), after
    the earlier failed attempts of the same call (`activity_failed` events' attributes, oldest first)."""
    if not earlier:
        return own
    parts = []
    for ev in earlier:
        error = ev.get("error") or {}
        text = str(error.get("traceback") or "").rstrip("\n") or shown_exception(error)
        if len(text) > TRACEBACK_CUT:
            text = "..." + text[-TRACEBACK_CUT:]
        parts.append(f"Attempt {ev.get('attempt')} failed:\n{text}")
    parts.append(f"Attempt {attempt} failed:\n{own.rstrip(chr(10))}")
    return "\n\n".join(parts) + "\n"


def note_earlier(store: Any, workflow_id: str, run_id: str, seq: int, attempt: int) -> None:
    """Keep the earlier failed attempts of this thread's failed `attempt` (from the run's history: one
    read, from the second attempt on), for its task event (`tell_attempts`). Read before the attempt is
    reported, so that nothing stands between the next attempt's publication and this one's event.
    Best effort: should the read fail, the event names this attempt alone."""
    if attempt <= 1:
        return
    try:
        state = store.load(workflow_id)
    except Exception as err:  # noqa: BLE001 - an event's detail must never fail the attempt
        log.warning("could not read the earlier attempts of %s seq %s for its task event: %s", workflow_id, seq, err)
        return
    if state is None or state.run_id != run_id:
        return
    earlier = [ev.attrs for ev in state.history if ev.type == EventType.ACTIVITY_FAILED
               and ev.attrs.get("seq") == seq and int(ev.attrs.get("attempt", attempt)) < attempt]
    noted = _earlier()
    if len(noted) > 16:  # those of attempts whose task ended otherwise (a report given up)
        noted.clear()
    noted[(workflow_id, run_id, seq, attempt)] = earlier[-EARLIER_SHOWN:]


def _earlier() -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """This thread's noted earlier attempts, by attempt (eager attempts run in the thread meanwhile)."""
    noted = getattr(_local, "earlier", None)
    if noted is None:
        noted = _local.earlier = {}
    return noted


def tell_attempts(exc: BaseException | None, args: Any, einfo: Any) -> None:
    """Make the traceback of the activity task's `task-retried` (`exc`: the attempt's exception, which
    `Retry` carries) or `task-failed` event (`exc` None: the raised exception, `einfo`'s own) tell the
    attempts (see the module's docstring), the earlier ones as `note_earlier` kept them. Best effort: the
    event keeps Celery's traceback should this fail."""
    try:
        attempt = int(args[3])
        earlier = _earlier().pop((args[0], args[1], int(args[2]), attempt), [])
        own = einfo.traceback if exc is None else to_failure(exc)["traceback"] or repr(exc)
        einfo.traceback = attempts_traceback(earlier, attempt, own)
    except Exception as err:  # noqa: BLE001 - an event's detail must never fail the task
        log.warning("could not name the failed attempts in the task event: %s", err)


def configure(app: Celery) -> None:
    """Declare the activity task's own exceptions as expected outcomes (logged as one line by Celery),
    and have its retried and failed events tell the failed attempts (`tell_attempts`)."""
    task = app.tasks["beluga.activity"]
    task.throws = (Exception,)
    task.on_retry = lambda exc, task_id, args, kwargs, einfo: tell_attempts(exc, args, einfo)
    task.on_failure = lambda exc, task_id, args, kwargs, einfo: tell_attempts(None, args, einfo)
