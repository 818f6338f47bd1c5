"""Exceptions as data: recorded by type, message and traceback text, rebuilt as `RemoteError`.

An exception crosses threads, processes and releases only as this dict, never pickled."""

from __future__ import annotations

import traceback as tb
from typing import Any, NoReturn

from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    HistoryLost,
    NonDeterminismError,
    RemoteError,
    SerializationError,
    UnreadableRun,
    WorkflowCancelled,
    WorkflowError,
)
from beluga.core.records import WorkflowState, WorkflowStatus

# Errors that retrying cannot fix.
_NEVER_RETRY = (NonDeterminismError, SerializationError)


def to_failure(exc: BaseException) -> dict[str, Any]:
    """`{"type", "message", "traceback", "non_retryable"}` with plain strings only, so it always encodes."""
    if isinstance(exc, RemoteError):
        kind, trace = exc.type, exc.traceback
    else:
        kind = exc.__class__.__name__
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    message = exc.message if isinstance(exc, ApplicationError) else _safe_str(exc)
    non_retryable = isinstance(exc, _NEVER_RETRY) or bool(getattr(exc, "non_retryable", False))
    failure: dict[str, Any] = {"type": kind, "message": message, "traceback": trace,
                               "non_retryable": non_retryable}
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ActivityError) and isinstance(cause, BaseException):
        failure["cause"] = to_failure(cause)
    return failure


def failure(type: str, message: str, *, non_retryable: bool = False, traceback: str = "") -> dict[str, Any]:
    """A failure record for an error that never was a Python exception here (a lost worker, a timeout
    noticed by the engine): the same shape `to_failure` gives."""
    return {"type": type, "message": message, "traceback": traceback, "non_retryable": non_retryable}


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


_OWN_ERRORS = frozenset({"NonDeterminismError", "QueryNotFound", "WorkflowNotFound", "WorkflowNotRunning",
                         "ConfigurationError", "SerializationError", "WorkflowAlreadyStarted",
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
    return False, child.error or failure(
        "WorkflowCancelled" if child.status is WorkflowStatus.CANCELED else "WorkflowError",
        f"child workflow {child.workflow_id} ended {child.status.value}", non_retryable=True)
