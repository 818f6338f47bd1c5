"""Rate and concurrency limits: the rate's syntax, GCRA and the leased semaphore, as tables."""

from __future__ import annotations

import pytest

from beluga.core.definitions import Registry
from beluga.core.errors import ConfigurationError
from beluga.core.limits import (
    LEAD,
    MARGIN,
    POLL,
    ActivityLimit,
    Granted,
    LimitState,
    Refused,
    limit_of,
    parse_rate,
    start_gate,
    take,
)


@pytest.mark.parametrize(("text", "rate"), [("10/s", 10.0), ("60/m", 1.0), ("3600/h", 1.0), ("5/10s", 0.5),
                                            ("2", 2.0), (0.5, 0.5), (" 30 / m ", 0.5)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["", "ten/s", "10/d", "0/s", -1, "10/s/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_the_rate_reserves_evenly_spaced_starts() -> None:
    limit, state = ActivityLimit(per_second=10.0), LimitState()
    step, first = 0.1 * (1 + MARGIN), 100.0
    got = [take(limit, state, f"a{i}", 100.0, 60.0) for i in range(4)]
    assert got == [Granted(pytest.approx(first + i * step)) for i in range(4)]  # each its own slot: no herd
    assert take(limit, state, "a1", 100.05, 60.0) == Granted(pytest.approx(first + step))  # asking again keeps it
    far = [take(limit, state, f"b{i}", 100.0, 60.0) for i in range(30)]
    assert far[-1] == Refused(pytest.approx(first + 33 * step - LEAD), "rate")  # past HORIZON: a durable wait
    assert take(limit, state, "b29", first + 33 * step - LEAD, 60.0) == Granted(pytest.approx(first + 33 * step))


def test_a_burst_is_due_at_once() -> None:
    limit, state = ActivityLimit(per_second=10.0, burst=3), LimitState()
    first = 100.0
    assert [take(limit, state, f"a{i}", 100.0, 60.0) for i in range(4)] == [
        Granted(first), Granted(pytest.approx(first)), Granted(pytest.approx(first)),
        Granted(pytest.approx(first + 0.1 * (1 + MARGIN)))]


def test_concurrency_is_checked_before_the_rate_and_permits_lapse() -> None:
    limit, state = ActivityLimit(per_second=1.0, max_concurrent=2), LimitState()
    assert take(limit, state, "a", 100.0, 60.0) == Granted(100.0)
    assert isinstance(take(limit, state, "b", 100.0, 60.0), Granted)
    tat = state.tat
    assert take(limit, state, "c", 100.5, 60.0) == Refused(min(160.0, 100.5 + POLL), "concurrency")
    assert state.tat == tat and "c" not in state.slots                 # refused: no start reserved
    assert take(limit, state, "a", 100.5, 60.0) == Granted(100.5)  # asking again keeps its permit (its slot passed)
    state.holders.pop("a")                                              # a's end was recorded
    assert isinstance(take(limit, state, "c", 101.0, 60.0), Granted)
    assert set(take(limit, state, "d", 200.0, 60.0) and state.holders) == {"d"}  # lapsed permits are freed


def test_limits_on_the_decorator() -> None:
    reg = Registry()
    reg.add_activity(lambda x: x, "llm", rate_limit="60/m", max_concurrent=4, rate_key=lambda spec: spec["tenant"])
    limit = reg.limit_of("llm")
    assert limit is not None and limit.per_second == 1.0 and limit.max_concurrent == 4
    assert limit.name_for("llm", {"tenant": "acme"}) == "acme"
    assert limit_of("5/s", None, None).name_for("llm", None) == "llm"           # type: ignore[union-attr]
    assert limit_of(None, None, None) is None and reg.limit_of("nothing") is None
    with pytest.raises(ConfigurationError, match="rate limit"):
        reg.add_activity(lambda: None, "bad", rate_limit="lots")
    with pytest.raises(ConfigurationError, match="max_concurrent"):
        reg.add_activity(lambda: None, "bad2", max_concurrent=0)


def test_the_start_gate_spaces_the_starts_themselves() -> None:
    limit, starts = ActivityLimit(per_second=10.0), []
    step = 0.1 * (1 + MARGIN)
    assert start_gate(starts, 100.0, limit) == 0.0 and starts == [100.0]
    assert start_gate(starts, 100.05, limit) == pytest.approx(step - 0.05)   # came early: waits the rest
    assert start_gate(starts, 100.0 + step, limit) == 0.0
    burst = ActivityLimit(per_second=10.0, burst=2)
    starts = []
    assert [start_gate(starts, 100.0, burst) for _ in range(3)] == [0.0, 0.0, pytest.approx(2 * step)]
