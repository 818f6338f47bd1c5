"""Retry policy: pure data plus the pure function that says when the next attempt may start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

Duration = float | int | timedelta


def seconds(duration: Duration | None) -> float | None:
    """Durations are float seconds or `timedelta`; everything inside Beluga is float seconds."""
    if duration is None:
        return None
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise TypeError(f"a duration is float seconds or a timedelta, not {type(duration).__name__}")
    if duration < 0:
        raise ValueError(f"a duration cannot be negative: {duration}")
    return float(duration)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter. `max_attempts=0` retries without end. `non_retryable` names
    error types (class names or classes) that fail the activity at once. An attempt that failed asking
    for a delay (`ApplicationError(next_retry_delay=)`, or an exception's `retry_after`) is retried after
    exactly that delay, neither jittered nor capped; `retry_after_counts=False` leaves such attempts out
    of `max_attempts` (a rate-limited call is not a failure of the call), as Temporal does not."""

    max_attempts: int = 3
    initial_interval: float = 0.1
    backoff_coefficient: float = 2.0
    max_interval: float = 10.0
    non_retryable: tuple[Any, ...] = ()
    retry_after_counts: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 (0 means unlimited)")
        if self.backoff_coefficient < 1:
            raise ValueError("backoff_coefficient must be >= 1")
        object.__setattr__(self, "initial_interval", seconds(self.initial_interval))
        object.__setattr__(self, "max_interval", seconds(self.max_interval))
        names = tuple(t if isinstance(t, str) else t.__name__ for t in self.non_retryable)
        object.__setattr__(self, "non_retryable", names)

    def interval(self, attempt: int) -> float:
        """The un-jittered wait after failed attempt number `attempt` (1-based)."""
        exponent = min(attempt - 1, 200)
        return min(self.initial_interval * self.backoff_coefficient**exponent, self.max_interval)

    def next_delay(self, attempt: int, error: dict[str, Any], rand: float, retry_afters: int = 0) -> float | None:
        """Seconds to wait before the attempt after `attempt`, or None when the activity has failed for
        good. `rand` is uniform in [0, 1): the jitter factor is 0.5 + rand, so in [0.5, 1.5).
        `retry_afters`: how many of the earlier attempts failed asking for a delay (not counted when
        `retry_after_counts` is False)."""
        if error.get("non_retryable") or error.get("type") in self.non_retryable:
            return None
        asked = error.get("next_retry_delay")
        counted = attempt if self.retry_after_counts else attempt - retry_afters - (asked is not None)
        if self.max_attempts and counted >= self.max_attempts:
            return None
        if asked is not None:
            return float(asked)
        return min(self.interval(counted) * (0.5 + rand), self.max_interval)  # the backoff grows by counted ones

    def to_dict(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "initial_interval": self.initial_interval,
                "backoff_coefficient": self.backoff_coefficient, "max_interval": self.max_interval,
                "non_retryable": list(self.non_retryable),
                **({} if self.retry_after_counts else {"retry_after_counts": False})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(data["max_attempts"], data["initial_interval"], data["backoff_coefficient"],
                   data["max_interval"], tuple(data.get("non_retryable", ())),
                   bool(data.get("retry_after_counts", True)))


def default_retry_policy() -> RetryPolicy:
    """3 attempts, 0.1 s initial interval, x2 backoff, 10 s maximum interval."""
    return RetryPolicy(max_attempts=3, initial_interval=0.1, backoff_coefficient=2.0, max_interval=10.0)


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the next attempt after `delay` seconds. `by_sender`: the adapter that ran the failed attempt
    sends the next one itself (a Celery retry with a countdown), so the run only records that it began;
    else the run arms a retry timer (`ArmRetry`)."""

    delay: float
    by_sender: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The activity has failed for good: `reason` says why ("non-retryable" or "attempts spent")."""

    reason: str


RetryDecision = Retry | GiveUp


def decide_retry(policy: RetryPolicy, failure: dict[str, Any], attempt: int, rand: float, *,
                 sender_limit: float | None = None, retry_afters: int = 0) -> RetryDecision:
    """The one retry decision every executor carries out, after failed attempt `attempt` (1-based).
    `rand` is uniform in [0, 1) (the jitter). `sender_limit`: the longest backoff the sender can schedule
    itself (Celery retries up to `CELERY_RETRY_LIMIT`); None when it schedules none. `retry_afters`: the
    earlier attempts that failed asking for a delay (`Pending`'s count; see `RetryPolicy.next_delay`).
    A delay the attempt asked for is always waited on the run's durable timer, so its history records
    when the next attempt began."""
    delay = policy.next_delay(attempt, failure, rand, retry_afters)
    if delay is None:
        spent = not (failure.get("non_retryable") or failure.get("type") in policy.non_retryable)
        return GiveUp("attempts spent" if spent else "non-retryable")
    by_sender = sender_limit is not None and delay <= sender_limit and "next_retry_delay" not in failure
    return Retry(delay, by_sender=by_sender)


def sender_can_decide(policy: RetryPolicy) -> bool:
    """Whether a process that ran an attempt, knowing only its number, can decide its retry: not when
    the policy leaves attempts that asked for a delay uncounted (only the run's history counts them)."""
    return policy.retry_after_counts


def retry_delay(decision: RetryDecision) -> float | None:
    """The decision as the `retry_in` a failed attempt's event records: the delay, or None for `GiveUp`."""
    return decision.delay if isinstance(decision, Retry) else None
