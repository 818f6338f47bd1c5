"""Exceptions as data: `to_failure` always yields plain strings; `from_failure` rebuilds `RemoteError`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    ConfigurationError,
    NonDeterminismError,
    RemoteError,
    SerializationError,
    WorkflowCancelled,
)
from beluga.core.failure import (
    NEVER_RETRIED,
    attempt_timed_out,
    cancelled,
    child_not_started,
    from_failure,
    history_lost,
    no_heartbeat,
    not_started_in_time,
    process_lost,
    terminated,
    to_failure,
    unreadable_run,
    worker_lost,
    workflow_timed_out,
)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(("exc", "type", "message", "non_retryable"), [
    (ValueError("bad"), "ValueError", "bad", False),
    (ApplicationError("rejected", non_retryable=True), "ApplicationError", "rejected", True),
    (ApplicationError("typed", type="PaymentDeclined"), "ApplicationError", "typed", False),
    (NonDeterminismError("diverged"), "NonDeterminismError", "diverged", True),
    (SerializationError("nope"), "SerializationError", "nope", True),
    (Unprintable(), "Unprintable", "<unprintable Unprintable>", False),
    (RemoteError("far away", type="KeyError", traceback="tb text"), "KeyError", "far away", False),
])
def test_to_failure(exc: BaseException, type: str, message: str, non_retryable: bool) -> None:
    failure = to_failure(raised(exc))
    assert (failure["type"], failure["message"], failure["non_retryable"]) == (type, message, non_retryable)
    assert isinstance(failure["traceback"], str)


def test_traceback_text_is_kept() -> None:
    failure = to_failure(raised(ValueError("bad")))
    assert failure["traceback"].startswith("Traceback") and "ValueError: bad" in failure["traceback"]
    assert to_failure(RemoteError("m", type="T", traceback="original tb"))["traceback"] == "original tb"


def test_activity_error_nests_its_cause() -> None:
    failure = to_failure(ActivityError("charge failed", ValueError("card"), activity="charge", attempts=3))
    assert failure["cause"]["type"] == "ValueError"
    rebuilt = from_failure(failure)
    assert isinstance(rebuilt, RemoteError) and rebuilt.type == "ActivityError"
    assert isinstance(rebuilt.__cause__, RemoteError) and rebuilt.__cause__.type == "ValueError"


def test_from_failure_round_trip() -> None:
    err = from_failure(to_failure(raised(KeyError("sku"))))
    assert isinstance(err, RemoteError)
    assert (err.type, err.message, str(err)) == ("KeyError", "'sku'", "KeyError: 'sku'")
    assert "Traceback" in err.traceback


def test_cancellation_stays_catchable() -> None:
    assert isinstance(from_failure(to_failure(WorkflowCancelled("stop"))), WorkflowCancelled)


def test_from_failure_tolerates_missing_fields() -> None:
    err = from_failure({})
    assert isinstance(err, RemoteError) and err.type == "Exception" and err.message == ""


@pytest.mark.parametrize("exc", [ConfigurationError("no activity 'x' here"), SerializationError("bad bytes"),
                                 NonDeterminismError("history differs")])
def test_errors_no_retry_can_fix_are_recorded_non_retryable(exc: Exception) -> None:
    assert isinstance(exc, NEVER_RETRIED)
    assert to_failure(exc)["non_retryable"] is True
    assert to_failure(ValueError("try again"))["non_retryable"] is False


@pytest.mark.parametrize(("built", "kind", "text", "final"), [
    (attempt_timed_out("charge", 2, 1.5), "TimeoutError", "activity 'charge': attempt 2 ran past its 1.5s timeout",
     False),
    (attempt_timed_out("charge", 2, None), "TimeoutError", "activity 'charge': attempt 2 ran past its timeout", False),
    (no_heartbeat(None, 3, 2.0), "TimeoutError", "attempt 3: no heartbeat for 2s", False),
    (no_heartbeat("charge", 3, 2.0), "TimeoutError", "activity 'charge': attempt 3: no heartbeat for 2s", False),
    (not_started_in_time(1, 0.5, "gpu"), "TimeoutError",
     "attempt 1 waited 0.5s for a worker on queue 'gpu' (schedule_to_start_timeout)", True),
    (worker_lost(4, 30.0), "WorkerLost", "attempt 4 lost its worker (no lease renewal for 30s)", False),
    (process_lost(1), "ProcessLost", "attempt 1 was interrupted: the process running it stopped", False),
    (terminated("w1", ""), "Terminated", "workflow w1 was terminated: no reason given", True),
    (workflow_timed_out("w1"), "TimeoutError", "workflow w1 ran past its timeout", True),
    (cancelled(""), "WorkflowCancelled", "cancelled", True),
    (child_not_started("c1", "WorkflowAlreadyStarted", "taken"), "WorkflowAlreadyStarted", "child workflow c1: taken",
     True),
    (history_lost("gap"), "HistoryLost", "gap", True),
    (unreadable_run("newer"), "UnreadableRun", "newer", True),
])
def test_named_failure_builders(built: dict[str, Any], kind: str, text: str, final: bool) -> None:
    assert built == {"type": kind, "message": text, "traceback": "", "non_retryable": final}


class _HTTPError(Exception):
    def __init__(self, retry_after: Any) -> None:
        super().__init__("429")
        self.retry_after = retry_after


@pytest.mark.parametrize(("exc", "asked"), [
    (ApplicationError("slow down", next_retry_delay=2.5), 2.5),
    (ApplicationError("slow down", next_retry_delay=timedelta(minutes=1)), 60.0),
    (_HTTPError("120"), 120.0),                              # a Retry-After header's seconds
    (_HTTPError(3), 3.0),
    (_HTTPError("Wed, 21 Oct 2026 07:28:00 GMT"), None),     # an HTTP date: left to the policy's backoff
    (_HTTPError(-1), None), (_HTTPError(float("nan")), None), (_HTTPError(True), None),
    (ValueError("plain"), None),
])
def test_a_delay_the_attempt_asks_for_is_recorded(exc: BaseException, asked: float | None) -> None:
    failure = to_failure(raised(exc))
    assert failure.get("next_retry_delay") == asked
    assert ("next_retry_delay" in failure) is (asked is not None)
