"""Exceptions as data: recorded by type, message and traceback text, rebuilt as `RemoteError`.

An exception crosses threads, processes and releases only as this dict, never pickled."""

from __future__ import annotations

import traceback as tb
from datetime import timedelta
from typing import Any, NoReturn

from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    ConfigurationError,
    HistoryLost,
    NonDeterminismError,
    RemoteError,
    SerializationError,
    UnreadableRun,
    WorkflowCancelled,
    WorkflowError,
)
from beluga.core.records import WorkflowState, WorkflowStatus

# Errors that no retry can fix, on every executor: code that does not match its history, data that does not
# encode, and a process set up wrong (an activity unknown to its worker, a missing extra). An attempt that
# raised one fails its activity at once; listed here only.
NEVER_RETRIED: tuple[type[BaseException], ...] = (NonDeterminismError, SerializationError, ConfigurationError)


def to_failure(exc: BaseException) -> dict[str, Any]:
    """`{"type", "message", "traceback", "non_retryable"}` with plain strings only, so it always encodes."""
    if isinstance(exc, RemoteError):
        kind, trace = exc.type, exc.traceback
    else:
        kind = exc.__class__.__name__
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    message = exc.message if isinstance(exc, ApplicationError) else _safe_str(exc)
    non_retryable = isinstance(exc, NEVER_RETRIED) or bool(getattr(exc, "non_retryable", False))
    failure: dict[str, Any] = {"type": kind, "message": message, "traceback": trace,
                               "non_retryable": non_retryable}
    asked = retry_after(exc)
    if asked is not None:
        failure["next_retry_delay"] = asked
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ActivityError) and isinstance(cause, BaseException):
        failure["cause"] = to_failure(cause)
    return failure


def retry_after(exc: BaseException) -> float | None:
    """The delay an exception asks its next attempt to wait, in seconds: `ApplicationError`'s
    `next_retry_delay`, else a `retry_after` attribute, as HTTP client errors for a 429 or 503 carry
    (seconds, a `timedelta`, or a `Retry-After` header's number). None when it asks for none (or
    for something that is not a delay: an HTTP date is left to the policy's backoff)."""
    for name in ("next_retry_delay", "retry_after"):
        value = getattr(exc, name, None)
        if value is None:
            continue
        if isinstance(value, timedelta):
            value = value.total_seconds()
        elif isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
    return None


def failure(type: str, message: str, *, non_retryable: bool = False, traceback: str = "") -> dict[str, Any]:
    """A failure record for an error that never was a Python exception here (a lost worker, a timeout
    noticed by the engine): the same shape `to_failure` gives."""
    return {"type": type, "message": message, "traceback": traceback, "non_retryable": non_retryable}


# --- the failures executors and stores record for errors that were never Python exceptions here --------
# One builder each, so that every executor records the same type and text for the same fault.
def _attempt(name: str | None, attempt: int | None) -> str:
    who = f"attempt {attempt}" if attempt is not None else "an attempt"
    return f"activity {name!r}: {who}" if name else who


def attempt_timed_out(name: str | None, attempt: int | None, timeout: float | None) -> dict[str, Any]:
    """An activity attempt ran past its `timeout` (retried by the policy). Its text starts with
    "activity " when the activity is named (the Temporal workflow tells the worker's own from Temporal's)."""
    limit = f"{timeout:g}s timeout" if timeout else "timeout"
    return failure("TimeoutError", f"{_attempt(name, attempt)} ran past its {limit}")


def no_heartbeat(name: str | None, attempt: int | None, heartbeat_timeout: float) -> dict[str, Any]:
    """An activity attempt sent no heartbeat for `heartbeat_timeout` seconds (retried by the policy)."""
    return failure("TimeoutError", f"{_attempt(name, attempt)}: no heartbeat for {heartbeat_timeout:g}s")


def not_started_in_time(attempt: int, waited: float, queue: str) -> dict[str, Any]:
    """No worker took an attempt before its `schedule_to_start_timeout`: not retried (it would wait in the
    same queue)."""
    return failure("TimeoutError", f"attempt {attempt} waited {waited:.3g}s for a worker on queue {queue!r} "
                   "(schedule_to_start_timeout)", non_retryable=True)


def worker_lost(attempt: int, lease_seconds: float) -> dict[str, Any]:
    """The worker running an attempt stopped renewing its lease (it died, or lost the message)."""
    return failure("WorkerLost", f"attempt {attempt} lost its worker (no lease renewal for {lease_seconds:g}s)")


def process_lost(attempt: int) -> dict[str, Any]:
    """The process running an attempt stopped with it (found when the run is recovered)."""
    return failure("ProcessLost", f"attempt {attempt} was interrupted: the process running it stopped")


def terminated(workflow_id: str, reason: str) -> dict[str, Any]:
    """The error of a run closed by `terminate`."""
    return failure("Terminated", f"workflow {workflow_id} was terminated: {reason or 'no reason given'}",
                   non_retryable=True)


def workflow_timed_out(workflow_id: str) -> dict[str, Any]:
    """The error of a run closed by its own deadline (`WorkflowOptions.timeout`)."""
    return failure("TimeoutError", f"workflow {workflow_id} ran past its timeout", non_retryable=True)


def cancelled(message: str = "cancelled") -> dict[str, Any]:
    """A cancellation as a failure (Beluga's own, rebuilt as `WorkflowCancelled`)."""
    return failure("WorkflowCancelled", message or "cancelled", non_retryable=True)


def nondeterminism(message: str, *, non_retryable: bool = True) -> dict[str, Any]:
    """Code that no longer matches the history it replays."""
    return failure("NonDeterminismError", message, non_retryable=non_retryable)


def child_not_started(workflow_id: str, kind: str, reason: str) -> dict[str, Any]:
    """A child run that could not be started (its id taken by a running run: `WorkflowAlreadyStarted`)."""
    return failure(kind, f"child workflow {workflow_id}: {reason}", non_retryable=True)


def history_lost(message: str) -> dict[str, Any]:
    """Events of a stored run's history are missing: the run cannot be replayed."""
    return failure("HistoryLost", message, non_retryable=True)


def unreadable_run(message: str) -> dict[str, Any]:
    """A stored run whose data does not decode (written by a newer Beluga, or damaged)."""
    return failure("UnreadableRun", message, non_retryable=True)


UNREADABLE = ("HistoryLost", "UnreadableRun")  # the failure types of a stored run that cannot be read whole


def unreadable(state: WorkflowState) -> UnreadableRun | None:
    """Why a stored run cannot be read whole (its store said so in its `error`: events of its history are
    missing, or its data does not decode), as the error to raise instead of replaying it; else None."""
    error = state.error
    if not error or error.get("type") not in UNREADABLE:
        return None
    cls = HistoryLost if error["type"] == "HistoryLost" else UnreadableRun
    return cls(str(error.get("message", "")))


def from_failure(failure: dict[str, Any]) -> WorkflowError:
    """Rebuild a recorded failure; Beluga's own cancellation stays catchable as `WorkflowCancelled`."""
    if failure.get("type") == "WorkflowCancelled":
        return WorkflowCancelled(failure.get("message", "cancelled"))
    err = RemoteError(str(failure.get("message", "")), type=str(failure.get("type", "Exception")),
                      traceback=str(failure.get("traceback", "")),
                      non_retryable=bool(failure.get("non_retryable", False)))
    if "cause" in failure:
        err.__cause__ = from_failure(failure["cause"])
    return err


def raise_as_own(failure: dict[str, Any]) -> NoReturn:
    """Re-raise a failure that another process reported for a call of ours (a query answered by a
    worker, say): Beluga's own errors come back as their documented class, anything else as
    `RemoteError`, so callers catch the same exceptions whichever executor answered."""
    from beluga.core import errors

    kind = failure.get("type")
    cls = getattr(errors, str(kind), None) if kind in _OWN_ERRORS else None
    if cls is not None:
        raise cls(str(failure.get("message", "")))
    raise from_failure(failure)


_OWN_ERRORS = frozenset({"NonDeterminismError", "QueryNotFound", "UpdateNotFound", "WorkflowNotFound",
                         "WorkflowNotRunning", "ConfigurationError", "SerializationError", "WorkflowAlreadyStarted",
                         "UnreadableRun", "HistoryLost", "InvalidName"})


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ itself raises still needs recording
        return f"<unprintable {exc.__class__.__name__}>"


def child_outcome(child: WorkflowState) -> tuple[bool, Any]:
    """What a closed child run reports to its parent: (True, result), or (False, a failure record)."""
    if child.status is WorkflowStatus.COMPLETED:
        return True, child.result
    text = f"child workflow {child.workflow_id} ended {child.status.value}"
    return False, child.error or (cancelled(text) if child.status is WorkflowStatus.CANCELED
                                  else failure("WorkflowError", text, non_retryable=True))
