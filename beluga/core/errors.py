"""The errors users catch. Every one is a `WorkflowError`, and each message says what to do next."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


class WorkflowError(Exception):
    """Base of every error Beluga raises on purpose."""


class WorkflowNotFound(WorkflowError):
    """No run with this workflow id exists in the store."""


class WorkflowAlreadyStarted(WorkflowError):
    """A run with this id is still open; wait for it to close or pick another id."""


class WorkflowNotRunning(WorkflowError):
    """The run has closed, so it can no longer be signalled or cancelled."""


class ScheduleNotFound(WorkflowError):
    """No schedule has this id."""


class ScheduleAlreadyExists(WorkflowError):
    """A schedule with this id exists already; delete it first to replace it."""


class ServiceUnavailable(WorkflowError):
    """Redis or the broker could not be reached within the client's retry time
    (`BELUGA_CLIENT_RETRY_SECONDS`). `may_have_taken_effect` says whether the call may still have
    happened; repeating it with the same `request_id` is safe either way (it takes effect once)."""

    def __init__(self, message: str, *, may_have_taken_effect: bool, request_id: str | None = None) -> None:
        super().__init__(message)
        self.may_have_taken_effect = may_have_taken_effect
        self.request_id = request_id


class WorkflowFailed(WorkflowError):
    """The run ended `failed`; `cause` holds the error it failed with."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class WorkflowCancelled(WorkflowError):
    """Cancellation was requested. Raised once inside the workflow at its next blocking call, so it can
    clean up; raised by `handle.result()` when the run ended `canceled`."""


class ActivityError(WorkflowError):
    """An activity failed and its retries are spent (or the error was non-retryable)."""

    def __init__(self, message: str, cause: BaseException | None = None, *, activity: str = "",
                 attempts: int = 0) -> None:
        super().__init__(message)
        self.cause = cause
        self.activity = activity
        self.attempts = attempts
        if cause is not None:
            self.__cause__ = cause


class ChildWorkflowError(ActivityError):
    """A child workflow ended without a result."""


class NonDeterminismError(WorkflowError):
    """The workflow code no longer matches the run's recorded history. The run stays open and untouched:
    deploy code that matches the history (or version the change with `ctx.patched()`) and it carries on.

    Raised by replay with where it happened: `position` (the id of the history event), `recorded` (what
    the history holds there) and `asked` (what the code asked for instead); None when not known."""

    def __init__(self, message: str, *, position: int | None = None, recorded: str | None = None,
                 asked: str | None = None) -> None:
        super().__init__(message)
        self.position = position
        self.recorded = recorded
        self.asked = asked


class QueryNotFound(WorkflowError):
    """The workflow registered no query handler of this name."""


class UpdateNotFound(WorkflowError):
    """The workflow set no update handler of this name (yet): the update is rejected, nothing recorded."""


class SerializationError(WorkflowError):
    """A value cannot be encoded (or decoded) by Beluga's msgpack converter."""


class ConfigurationError(WorkflowError):
    """Unknown provider or store, an unregistered name, or a function that cannot be a workflow."""


class ConcurrencyError(WorkflowError):
    """Another writer appended to this run first; re-read the history and try again."""


class ReplicationError(WorkflowError):
    """A history write reached the Redis primary, but fewer replicas than `BELUGA_APPEND_REPLICAS`
    confirmed it within `BELUGA_APPEND_REPLICAS_TIMEOUT`: do not take it as durable, as a failover now
    could lose it. Retry the call; a retried signal may then be recorded twice, and a retried start
    raises `WorkflowAlreadyStarted` when the first one was kept. `result` is what the primary answered,
    for Beluga's own bookkeeping, which acts on what the primary holds."""

    def __init__(self, message: str, *, acked: int = 0, wanted: int = 0, result: Any = None) -> None:
        super().__init__(message)
        self.acked = acked
        self.wanted = wanted
        self.result = result


class ApplicationError(WorkflowError):
    """Raise from user code to fail an activity or workflow with a message; `non_retryable=True` stops
    activity retries at once. `next_retry_delay` (seconds or a `timedelta`, as a server's `Retry-After`
    says) makes the next attempt wait exactly that long instead of the policy's backoff; whether such
    an attempt counts against `max_attempts` is the policy's `retry_after_counts`."""

    def __init__(self, message: str, *details: Any, non_retryable: bool = False,
                 type: str | None = None, next_retry_delay: float | timedelta | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.non_retryable = non_retryable
        self.type = type or "ApplicationError"
        self.next_retry_delay = next_retry_delay


class RemoteError(ApplicationError):
    """An exception raised in another thread or process, rebuilt from its recorded type, message and
    traceback text. `type` is the original class name; `traceback` the original traceback."""

    def __init__(self, message: str, *, type: str, traceback: str = "", non_retryable: bool = False) -> None:
        super().__init__(message, non_retryable=non_retryable, type=type)
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


class InvalidName(WorkflowError, ValueError):
    """A workflow id, signal name or query name that cannot name anything: not a string, or holding a
    NUL or another control character (the fleet's records join ids with separators). Refused at the
    call, before anything is stored."""


class UnreadableRun(WorkflowError):
    """A stored run that cannot be read whole: its data was written by a newer Beluga, or is damaged.
    The run is held stuck (never replayed, never extended) and `describe().error` says why; the runs
    beside it carry on."""

    workflow_type = ""  # the run's, when the raiser knew it (for logs and metrics)


class HistoryLost(UnreadableRun):
    """Events of a run's stored history are missing (a Redis that evicted keys: see `maxmemory-policy`,
    or data deleted by hand). The run cannot be replayed or extended, so it never completes: it is held
    stuck with this reason in `describe().error`."""
