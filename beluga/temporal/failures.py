"""Beluga's failures and retry policies in Temporal's terms, both ways: a Beluga failure record travels as
the first detail of an `ApplicationError`; a Temporal error that carries none is given one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import exceptions
from temporalio.common import RetryPolicy as TemporalRetry

from beluga import codec
from beluga.core.failure import cancelled, failure
from beluga.core.retry import RetryPolicy


def retry_policy(policy: RetryPolicy) -> TemporalRetry:
    """Beluga's policy as Temporal's: the same attempts, intervals and non-retryable error types (by class
    name). Temporal adds no jitter to the interval."""
    return TemporalRetry(initial_interval=timedelta(seconds=policy.initial_interval),
                         backoff_coefficient=policy.backoff_coefficient,
                         maximum_interval=timedelta(seconds=max(policy.max_interval, policy.initial_interval)),
                         maximum_attempts=policy.max_attempts,
                         non_retryable_error_types=[t if isinstance(t, str) else t.__name__
                                                    for t in policy.non_retryable])


def policy_of(policy: TemporalRetry | None) -> RetryPolicy:
    """Temporal's policy of an attempt as Beluga's, for the core's retry decision (`decide_retry`): its
    attempts and non-retryable error types (no policy: Temporal retries without end)."""
    if policy is None:
        return RetryPolicy(max_attempts=0)
    initial = policy.initial_interval.total_seconds() if policy.initial_interval else 1.0
    maximum = policy.maximum_interval.total_seconds() if policy.maximum_interval else 100 * initial
    return RetryPolicy(max_attempts=max(policy.maximum_attempts or 0, 0), initial_interval=initial,
                       backoff_coefficient=max(policy.backoff_coefficient or 2.0, 1.0), max_interval=maximum,
                       non_retryable=tuple(policy.non_retryable_error_types or ()))


def failure_of(exc: BaseException) -> dict[str, Any]:
    """The Beluga failure record a Temporal error carries (Beluga's own errors travel as the first detail
    of an `ApplicationError`), else one made from what Temporal says."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, exceptions.ApplicationError) and seen.details:
            raw = seen.details[0]
            if isinstance(raw, (bytes, bytearray)):
                return dict(codec.decode(bytes(raw)))
        if isinstance(seen, exceptions.TimeoutError):
            return failure("TimeoutError", f"timed out ({seen.type.name.lower() if seen.type else 'timeout'})")
        if isinstance(seen, exceptions.TerminatedError):
            return failure("Terminated", str(seen), non_retryable=True)  # Temporal's text: no run id here
        if isinstance(seen, exceptions.CancelledError):
            return cancelled(str(seen))
        seen = seen.__cause__ or getattr(seen, "cause", None)
    return failure(type(exc).__name__, str(exc), non_retryable=True)


def application_error(fail: dict[str, Any]) -> exceptions.ApplicationError:
    """A Beluga failure as Temporal's error; a delay the attempt asked for is Temporal's
    `next_retry_delay`, which its server waits instead of the policy's interval."""
    asked = fail.get("next_retry_delay")
    return exceptions.ApplicationError(str(fail.get("message", "")), codec.encode(fail),
                                       type=str(fail.get("type", "Exception")),
                                       non_retryable=bool(fail.get("non_retryable", False)),
                                       next_retry_delay=None if asked is None else timedelta(seconds=asked))
