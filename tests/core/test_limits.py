"""Rate and concurrency limits: the rate's syntax, GCRA and the leased semaphore, as tables."""

from __future__ import annotations

import pytest

from beluga.core.definitions import Registry
from beluga.core.errors import ConfigurationError
from beluga.core.limits import MARGIN, ActivityLimit, Refused, gcra, limit_of, parse_rate, take


@pytest.mark.parametrize(("text", "rate"), [("10/s", 10.0), ("60/m", 1.0), ("3600/h", 1.0), ("5/10s", 0.5),
                                            ("2", 2.0), (0.5, 0.5), (" 30 / m ", 0.5)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["", "ten/s", "10/d", "0/s", -1, "10/s/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_gcra_spaces_starts_by_the_interval_and_allows_a_burst() -> None:
    assert gcra(0.0, 100.0, 0.1, 1) == (None, pytest.approx(100.1))
    assert gcra(100.1, 100.05, 0.1, 1) == (pytest.approx(100.1), 100.1)   # too early: when it may
    assert gcra(100.3, 100.1, 0.1, 3) == (None, pytest.approx(100.4))      # within a burst of 3


def test_take_checks_concurrency_first_then_the_rate() -> None:
    limit = ActivityLimit(per_second=10.0, max_concurrent=2)
    refused, tat, holders = take(limit, 0.0, {}, "a", 100.0, 60.0, 5.0)
    assert refused is None and holders == {"a": 160.0} and tat == pytest.approx(100.0 + 0.1 * (1 + MARGIN))
    refused, tat2, _ = take(limit, tat, holders, "b", 100.01, 60.0, 5.0)
    assert refused == Refused(pytest.approx(tat), "rate") and tat2 == tat      # the rate: no permit spent
    refused, tat, holders = take(limit, tat, holders, "b", 100.2, 60.0, 5.0)
    assert refused is None and set(holders) == {"a", "b"}
    refused, _, _ = take(limit, tat, holders, "c", 100.5, 60.0, 5.0)
    assert refused == Refused(105.5, "concurrency")                            # asks again within `poll`
    assert take(limit, tat, holders, "a", 100.5, 60.0, 5.0)[0] is None          # a holder asking again keeps it
    refused, _, holders = take(limit, tat, holders, "c", 160.5, 60.0, 5.0)      # lapsed permits are freed
    assert refused is None and set(holders) == {"c"}


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
