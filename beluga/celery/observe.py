"""What the fleet's tasks tell observers, hooked in through Celery's signals (the tasks stay as they are):
the run's identity on every log record made while a task works on a run (`beluga.logs`), an
OpenTelemetry span around each activity attempt in the trace of the client's `execute`
(`beluga.propagation`), and Prometheus metrics (`beluga.metrics`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import signals

from beluga import logs, metrics, propagation
from beluga.celery.foreign import header

BELUGA_TASKS = frozenset({"beluga.activity", "beluga.coordinate", "beluga.query"})
SENT_HEADER = "beluga_sent"  # an activity message's header: when it was sent, on the fleet's clock
_local = threading.local()


def _is_ours(task: Any) -> bool:
    """Remembered on the task (one instance per app and name): reading the app's configuration costs
    more than the rest of a hook."""
    ours = getattr(task, "_beluga_ours", None)
    if ours is None:
        ours = getattr(task, "name", None) in BELUGA_TASKS and hasattr(getattr(task.app, "conf", None),
                                                                        "beluga_settings")
        try:
            task._beluga_ours = ours
        except AttributeError:  # not a Celery task instance: ask again next time
            pass
    return ours


def _stack() -> list[tuple[Any, ...]]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@signals.task_prerun.connect
def _on_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, args: Any = None,
               **_: Any) -> None:
    task = task or sender
    metrics.slot_taken()  # any task of the worker takes one of its slots
    if not _is_ours(task):
        return
    try:
        args = list(args or ())
        workflow_id = str(args[0])
    except (IndexError, TypeError):
        return
    if task.name == "beluga.activity" and len(args) >= 7:
        now = task.worker.fleet.clock.now()  # the fleet's clock, which stamped the message
        attempt_began(task_id, workflow_id, *args[1:5], args[6], _queued_at(task.request), now)
    else:
        _stack().append((task_id, logs.bind(workflow_id=workflow_id), None, time.perf_counter(), None))


@signals.task_postrun.connect
def _on_postrun(sender: Any = None, task_id: str | None = None, task: Any = None, args: Any = None,
                state: str | None = None, **_: Any) -> None:
    task = task or sender
    metrics.slot_freed()
    if not _is_ours(task):
        return
    name = str(list(args or ())[4]) if task.name == "beluga.activity" and args and len(args) > 4 else None
    attempt_ended(task_id, name, state or "")


def attempt_began(task_id: str | None, workflow_id: str, run_id: str, seq: int, attempt: int, name: str,
                  options: Any, queued_at: float | None, now: float) -> None:
    """An activity attempt starts in this thread: its log records name the run, its span opens in the trace
    of the client's `execute`, its metrics count it (`queued_at` and `now` on the fleet's clock)."""
    token = logs.bind(workflow_id=workflow_id, run_id=run_id, activity=name, seq=seq, attempt=attempt)
    queue = options.get("queue") if isinstance(options, dict) else None
    metrics.activity_started(name, queue, queued_at, now)
    headers = options.get("trace") if isinstance(options, dict) else None
    span = propagation.start_activity(workflow_id, run_id, name, seq, attempt, headers)
    _stack().append((task_id, token, span, time.perf_counter(), queue))


def attempt_ended(task_id: str | None, name: str | None, state: str, error: BaseException | None = None) -> None:
    """The task (or eager attempt) `task_id` ended in Celery state `state`; `name`: its activity, if one."""
    stack = _stack()
    if not stack or stack[-1][0] != task_id:
        return
    _, token, span, began, queue = stack.pop()
    if span is HANDED:  # an async attempt, which ends later (`handed_ended`): its span (kept in the place
        # of the start time, see `hand_off`) stops being current in this thread
        name = None
        propagation.detach(began)
    if name is not None:
        error = error or getattr(_local, "error", None)
        metrics.activity_finished(name, queue, state, time.perf_counter() - began, metrics.error_type(error))
        propagation.end(span, error, failed=state in ("RETRY", "FAILURE"))
    _local.error = None
    try:
        logs.unbind(token)
    except ValueError:  # reset in another context (never expected): leave the binding cleared instead
        logs.bind()


HANDED = object()  # in a task's stack entry: its attempt went on to the process's event loop


def hand_off(task_id: str | None) -> tuple[Any, float, str | None] | None:
    """The attempt of task `task_id`, running in this thread, is handed to the process's event loop (an
    `async def` activity, see celery/async_attempts.py): the task ends first, the attempt later. Its span
    and start time are taken off the task, whose end then counts nothing, for `handed_ended` to close as
    the attempt ends; the coroutine starts from this thread's context, where the span is current and the
    log records name the run."""
    stack = _stack()
    if not stack or stack[-1][0] != task_id:
        return None
    _, token, span, began, queue = stack[-1]
    stack[-1] = (task_id, token, HANDED, span, queue)
    return span, began, queue


def handed_ended(handed: tuple[Any, float, str | None] | None, name: str, state: str,
                 error: BaseException | None = None) -> None:
    """A handed-off attempt (`hand_off`) ended in Celery state `state` (SUCCESS, RETRY, FAILURE)."""
    if handed is None:
        return
    span, began, queue = handed
    metrics.activity_finished(name, queue, state, time.perf_counter() - began, metrics.error_type(error))
    propagation.end(span, error, failed=state in ("RETRY", "FAILURE"), current=False)


@signals.task_retry.connect
def _on_retry(sender: Any = None, reason: Any = None, **_: Any) -> None:
    if _is_ours(sender):
        _local.error = getattr(reason, "exc", None)


@signals.task_failure.connect
def _on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    if _is_ours(sender):
        _local.error = exception


def _queued_at(request: Any) -> float | None:
    """When the attempt's message became due: sent (header `beluga_sent`, see `mark_sent`), or its ETA
    for a Celery retry's delay, whichever is later (both on the fleet's clock, as their senders stamp them)."""
    sent = header(request, SENT_HEADER)
    try:
        sent = float(sent) if sent is not None else None
    except (TypeError, ValueError):
        sent = None
    eta = getattr(request, "eta", None)
    if eta and sent is not None:
        from datetime import datetime

        try:
            due = datetime.fromisoformat(str(eta)).timestamp()
        except ValueError:
            return sent
        return max(sent, due)
    return sent




@signals.before_task_publish.connect
def mark_sent(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp an activity message with the time it is sent, for the queue-to-start latency: Beluga's own
    senders stamp it on the fleet's clock (`SENT_HEADER`); any other sender gets its process's clock."""
    if sender == "beluga.activity" and headers is not None:
        headers.setdefault(SENT_HEADER, time.time())
