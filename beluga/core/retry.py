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
    error types (class names or classes) that fail the activity at once."""

    max_attempts: int = 3
    initial_interval: float = 0.1
    backoff_coefficient: float = 2.0
    max_interval: float = 10.0
    non_retryable: tuple[Any, ...] = ()

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

    def next_delay(self, attempt: int, error: dict[str, Any], rand: float) -> float | None:
        """Seconds to wait before the attempt after `attempt`, or None when the activity has failed for
        good. `rand` is uniform in [0, 1): the jitter factor is 0.5 + rand, so in [0.5, 1.5)."""
        if error.get("non_retryable") or error.get("type") in self.non_retryable:
            return None
        if self.max_attempts and attempt >= self.max_attempts:
            return None
        return min(self.interval(attempt) * (0.5 + rand), self.max_interval)

    def to_dict(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "initial_interval": self.initial_interval,
                "backoff_coefficient": self.backoff_coefficient, "max_interval": self.max_interval,
                "non_retryable": list(self.non_retryable)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(data["max_attempts"], data["initial_interval"], data["backoff_coefficient"],
                   data["max_interval"], tuple(data.get("non_retryable", ())))


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
                 sender_limit: float | None = None) -> RetryDecision:
    """The one retry decision every executor carries out, after failed attempt `attempt` (1-based).
    `rand` is uniform in [0, 1) (the jitter). `sender_limit`: the longest backoff the sender can schedule
    itself (Celery retries up to `CELERY_RETRY_LIMIT`); None when it schedules none."""
    delay = policy.next_delay(attempt, failure, rand)
    if delay is None:
        spent = not (failure.get("non_retryable") or failure.get("type") in policy.non_retryable)
        return GiveUp("attempts spent" if spent else "non-retryable")
    return Retry(delay, by_sender=sender_limit is not None and delay <= sender_limit)


def retry_delay(decision: RetryDecision) -> float | None:
    """The decision as the `retry_in` a failed attempt's event records: the delay, or None for `GiveUp`."""
    return decision.delay if isinstance(decision, Retry) else None
