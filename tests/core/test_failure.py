"""Exceptions as data: `to_failure` always yields plain strings; `from_failure` rebuilds `RemoteError`."""

from __future__ import annotations

import pytest

from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    NonDeterminismError,
    RemoteError,
    SerializationError,
    WorkflowCancelled,
)
from beluga.core.failure import from_failure, to_failure


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
