"""`RetryPolicy`: pure data and one pure function, tested with tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from beluga.core.errors import ApplicationError, SerializationError
from beluga.core.failure import to_failure
from beluga.core.retry import GiveUp, Retry, RetryPolicy, decide_retry, default_retry_policy, retry_delay, seconds

ERR = {"type": "ValueError", "message": "boom", "traceback": "", "non_retryable": False}
P = RetryPolicy(max_attempts=10, initial_interval=1.0, backoff_coefficient=2.0, max_interval=10.0)


@pytest.mark.parametrize(("attempt", "interval"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0),
                                                   (9, 10.0), (10_000, 10.0)])
def test_interval_grows_exponentially_up_to_max_interval(attempt: int, interval: float) -> None:
    assert P.interval(attempt) == interval


@pytest.mark.parametrize(("attempt", "rand", "delay"), [
    (1, 0.0, 0.5),        # jitter factor 0.5 + rand: lower bound
    (1, 0.5, 1.0),
    (1, 0.999, 1.499),    # just under 1.5 times the interval
    (2, 0.0, 1.0),
    (3, 0.25, 3.0),
    (4, 0.9, 10.0),       # 8 * 1.4 = 11.2, capped at max_interval
    (6, 0.0, 5.0),        # the interval is capped first, then jittered
    (6, 0.999, 10.0),
])
def test_next_delay_table(attempt: int, rand: float, delay: float) -> None:
    assert P.next_delay(attempt, ERR, rand) == pytest.approx(delay)


@pytest.mark.parametrize("attempt", range(1, 12))
@pytest.mark.parametrize("rand", [0.0, 0.1, 0.5, 0.9, 0.999999])
def test_jitter_bounds(attempt: int, rand: float) -> None:
    policy = RetryPolicy(max_attempts=0, initial_interval=0.1, backoff_coefficient=3.0, max_interval=7.0)
    delay = policy.next_delay(attempt, ERR, rand)
    assert delay is not None
    base = policy.interval(attempt)
    assert 0.5 * base <= delay < 1.5 * base
    assert delay <= policy.max_interval


@pytest.mark.parametrize(("max_attempts", "attempt", "retries"), [
    (1, 1, False), (3, 1, True), (3, 2, True), (3, 3, False), (3, 4, False), (0, 1, True), (0, 500, True)])
def test_max_attempts(max_attempts: int, attempt: int, retries: bool) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)
    assert (policy.next_delay(attempt, ERR, 0.5) is not None) is retries


class PaymentDeclined(Exception):
    pass


@pytest.mark.parametrize(("policy", "error", "retries"), [
    (RetryPolicy(non_retryable=("PaymentDeclined",)), to_failure(PaymentDeclined("no")), False),
    (RetryPolicy(non_retryable=(PaymentDeclined,)), to_failure(PaymentDeclined("no")), False),
    (RetryPolicy(non_retryable=(PaymentDeclined,)), to_failure(ValueError("no")), True),
    (RetryPolicy(), to_failure(ApplicationError("stop", non_retryable=True)), False),
    (RetryPolicy(), to_failure(ApplicationError("again")), True),
    (RetryPolicy(), to_failure(SerializationError("cannot encode")), False),
    (RetryPolicy(), {"type": "X", "message": "", "non_retryable": True}, False),
    (RetryPolicy(non_retryable=("ApplicationError",)), to_failure(ApplicationError("x")), False),
])
def test_non_retryable(policy: RetryPolicy, error: dict[str, Any], retries: bool) -> None:
    assert (policy.next_delay(1, error, 0.5) is not None) is retries


def test_non_retryable_classes_are_stored_as_names() -> None:
    assert RetryPolicy(non_retryable=(PaymentDeclined, "KeyError")).non_retryable == ("PaymentDeclined",
                                                                                       "KeyError")


def test_default_retry_policy() -> None:
    assert default_retry_policy() == RetryPolicy(max_attempts=3, initial_interval=0.1,
                                                 backoff_coefficient=2.0, max_interval=10.0)


def test_round_trip_through_dict() -> None:
    policy = RetryPolicy(5, timedelta(milliseconds=250), 1.5, timedelta(seconds=3), (PaymentDeclined,))
    assert policy.initial_interval == 0.25 and policy.max_interval == 3.0
    assert RetryPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize("kwargs", [{"max_attempts": -1}, {"backoff_coefficient": 0.5},
                                    {"initial_interval": -1}, {"max_interval": "10"}])
def test_invalid_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0.0), (1.5, 1.5), (3, 3.0),
                                                 (timedelta(minutes=1), 60.0)])
def test_seconds(value: Any, expected: float | None) -> None:
    assert seconds(value) == expected


@pytest.mark.parametrize("value", [True, "1", -0.1, [1]])
def test_seconds_refuses(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        seconds(value)


@pytest.mark.parametrize(("error", "attempt", "limit", "decision"), [
    (ERR, 1, None, Retry(0.5)),                                  # the run arms a retry timer
    (ERR, 1, 300.0, Retry(0.5, by_sender=True)),                 # short enough for the sender to send it
    (ERR, 4, 3.0, Retry(4.0)),                                   # too long for the sender: a durable timer
    (ERR, 10, 300.0, GiveUp("attempts spent")),
    ({**ERR, "non_retryable": True}, 1, 300.0, GiveUp("non-retryable")),
    ({**ERR, "type": "KeyError"}, 1, None, GiveUp("non-retryable")),  # named by the policy
])
def test_decide_retry_table(error: dict[str, Any], attempt: int, limit: float | None, decision: Any) -> None:
    policy = RetryPolicy(max_attempts=10, initial_interval=1.0, backoff_coefficient=2.0, max_interval=10.0,
                         non_retryable=("KeyError",))
    assert decide_retry(policy, error, attempt, 0.0, sender_limit=limit) == decision
    assert retry_delay(decision) == (decision.delay if isinstance(decision, Retry) else None)


ASKED = {**ERR, "next_retry_delay": 42.0}  # an attempt that asked for its retry's delay (a 429's Retry-After)


@pytest.mark.parametrize(("counts", "attempt", "earlier", "error", "decision"), [
    (True, 1, 0, ASKED, Retry(42.0)),  # exactly the delay asked: no jitter, no max_interval cap, and on the
                                       # run's durable timer, never the sender's (its start is recorded)
    (True, 3, 2, ASKED, GiveUp("attempts spent")),  # counted: the third attempt was the last
    (True, 3, 2, ERR, GiveUp("attempts spent")),
    (False, 3, 2, ASKED, Retry(42.0)),            # uncounted: no attempt spent yet
    (False, 3, 2, ERR, Retry(1.0, by_sender=True)),  # one spent (this one): two earlier ones asked for delays,
                                                     # so the backoff is the first one's
    (False, 5, 2, ERR, GiveUp("attempts spent")),  # three spent
    (False, 1, 0, {**ASKED, "non_retryable": True}, GiveUp("non-retryable")),
])
def test_a_delay_asked_for_replaces_the_backoff(counts: bool, attempt: int, earlier: int, error: dict[str, Any],
                                                decision: Any) -> None:
    policy = RetryPolicy(max_attempts=3, initial_interval=1.0, max_interval=10.0, retry_after_counts=counts)
    assert decide_retry(policy, error, attempt, 0.5, sender_limit=300.0, retry_afters=earlier) == decision


def test_retry_after_counts_round_trips_and_old_records_count() -> None:
    policy = RetryPolicy(retry_after_counts=False)
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    assert "retry_after_counts" not in RetryPolicy().to_dict()  # histories recorded before it still replay
    assert RetryPolicy.from_dict(RetryPolicy().to_dict()).retry_after_counts is True
