"""Priorities (beluga/core/priority.py): the order of the attempts waiting for a concurrency permit, with
aging, as `core.limits.take` and `give_back` apply it on an injected clock, and the checks and broker
priorities of the keys."""

from __future__ import annotations

import pytest

from beluga.core.limits import ActivityLimit, Granted, LimitState, Refused, give_back, take
from beluga.core.priority import AGING, broker_priority, check_priority, effective_priority, waiter_score

ONE = ActivityLimit(max_concurrent=1)
LEASE = 3600.0


def _waits(state: LimitState, holder: str, now: float, priority: int, aging: float = AGING) -> None:
    assert isinstance(take(ONE, state, holder, now, LEASE, priority, aging), Refused)


def test_a_returned_permit_goes_to_the_higher_priority_then_the_longest_waiter() -> None:
    state = LimitState()
    assert isinstance(take(ONE, state, "a", 0.0, LEASE), Granted)
    _waits(state, "low", 1.0, 5)
    _waits(state, "mid", 2.0, 3)
    _waits(state, "mid-later", 3.0, 3)
    _waits(state, "high", 4.0, 1)
    order = []
    holder = "a"
    for now in (5.0, 6.0, 7.0, 8.0):
        holder = give_back(state, holder, now)  # handed on: the one woken holds it ...
        assert holder is not None
        assert isinstance(take(ONE, state, holder, now, LEASE), Granted)  # ... and gets it when it asks
        order.append(holder)
    assert order == ["high", "mid", "mid-later", "low"]
    assert give_back(state, holder, 9.0) is None and not state.holders


def test_a_handed_permit_is_not_taken_by_a_newcomer_and_lapses_if_never_asked_for() -> None:
    state = LimitState()
    take(ONE, state, "a", 0.0, LEASE)
    _waits(state, "b", 1.0, 3)
    assert give_back(state, "a", 2.0, hold=60.0) == "b"
    assert isinstance(take(ONE, state, "newcomer", 2.5, LEASE, priority=1), Refused)  # held for "b"
    # "b"'s run closed before it asked: the permit lapses after `hold`; the newcomer, first in order, gets it
    assert isinstance(take(ONE, state, "newcomer", 62.5, LEASE, priority=1), Granted)


def test_a_waiter_whose_run_closed_leaves_the_order() -> None:
    state = LimitState()
    take(ONE, state, "a", 0.0, LEASE)
    _waits(state, "gone", 1.0, 1)
    _waits(state, "b", 2.0, 3)
    assert give_back(state, "gone", 3.0) is None  # its run closed while it waited: it held nothing
    assert give_back(state, "a", 4.0) == "b"


def test_a_free_permit_goes_to_no_newcomer_while_waiters_are_ahead_of_it() -> None:
    """A permit that came free by its lease lapsing (not handed on): waiters ahead in order keep their
    turn; a newcomer ahead of them all in order takes it."""
    state = LimitState()
    take(ONE, state, "a", 0.0, 10.0)  # lapses at 10
    _waits(state, "b", 1.0, 3)
    assert isinstance(take(ONE, state, "late-low", 11.0, LEASE, priority=5), Refused)
    assert isinstance(take(ONE, state, "b", 12.0, LEASE), Granted)


def _serve(aging: float, seconds: int) -> tuple[float | None, int]:
    """One permit; every second the holder ends and a new priority-1 attempt begins to wait, for
    `seconds`; a priority-5 attempt began to wait at 0.5. Returns when it got the permit (None: never)
    and how many priority-1 attempts that began to wait after it were served before it."""
    state = LimitState()
    take(ONE, state, "h0", 0.0, LEASE, 1, aging)
    _waits(state, "low", 0.5, 5, aging)
    holder, passed = "h0", 0
    for t in range(1, seconds + 1):
        _waits(state, f"h{t}", float(t), 1, aging)
        holder = give_back(state, holder, t + 0.9)
        assert holder is not None and isinstance(take(ONE, state, holder, t + 0.9, LEASE, 1, aging), Granted)
        if holder == "low":
            return t + 0.9, passed
        passed += 1
    return None, passed


def test_a_low_priority_waiter_is_served_within_the_aging_bound() -> None:
    """Higher-priority attempts keep coming, one per permit: they pass the priority-5 waiter only while
    it is younger than (5 - 1) * AGING; then it waits only for those already ahead of it (here the one
    that began at 40, the permit it holds for a second). Without aging it would wait for ever."""
    got, passed = _serve(AGING, 200)
    assert got is not None and got <= 0.5 + 4 * AGING + 2.0
    assert passed >= 4 * AGING - 1  # the higher ones did go first meanwhile
    never, _ = _serve(1e9, 200)
    assert never is None


def test_waiter_score_ages_by_priority() -> None:
    assert waiter_score(100.0, 1) == 100.0
    assert waiter_score(100.0, 5) == 100.0 + 4 * AGING
    assert waiter_score(100.0, 3, aging=2.0) == 104.0


@pytest.mark.parametrize("bad", [0, 6, -1, 2.0, "1", True])
def test_check_priority_refuses_what_is_not_a_key(bad: object) -> None:
    with pytest.raises(ValueError, match="from 1 \\(highest\\) to 5"):
        check_priority(bad)


def test_effective_priority_and_broker_priorities() -> None:
    assert check_priority(None) is None and check_priority(4) == 4
    assert effective_priority(None, None) == 3 and effective_priority(None, 1) == 1 and effective_priority(5, 1) == 5
    # Redis (kombu: 0 first, no priority is 0): the default as before, lower ones behind it
    assert [broker_priority(p, redis=True) for p in range(1, 6)] == [None, None, None, 3, 6]
    # AMQP (RabbitMQ: higher first, no priority is the lowest): higher ones ahead of the default
    assert [broker_priority(p, redis=False) for p in range(1, 6)] == [2, 1, None, None, None]
