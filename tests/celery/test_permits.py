"""The fleet's permit scripts (beluga/lua/permit.lua, return_permit.lua, start_gate.lua) against a real
server through `FleetPermits`: they answer as `core.limits` does for the same asks, a returned permit
queues the longest waiter's `AttemptDue`, and the start gate spaces starts. No workers are started."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from beluga import codec
from beluga.celery import messages
from beluga.celery.fleet import Fleet
from beluga.celery.permits import FleetPermits
from beluga.core import steps as st
from beluga.core.definitions import Registry
from beluga.core.limits import Granted, Holder, LimitState, Refused, give_back, take
from beluga.stores.redis import RedisStore
from beluga.workflow import WorkflowOptions
from tests.executors.helpers import eventually


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Fleet]:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield Fleet(store, lease_seconds=5.0)
    store.close()


def _permits(fleet: Fleet, **limits: object) -> FleetPermits:
    reg = Registry()
    reg.add_activity(lambda x: x, "call", **limits)  # type: ignore[arg-type]
    return FleetPermits(fleet, reg)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_script_answers_as_the_pure_take(fleet: Fleet, seed: int) -> None:
    """Random asks and returns of attempts of random priorities: the scripts grant, refuse and hand the
    returned permits on (to the same waiter) as `core.limits.take` and `give_back` do."""
    permits = _permits(fleet, rate_limit="20/s", max_concurrent=3)
    limit = permits.registry.limit_of("call")
    assert limit is not None
    state, rng, now = LimitState(), random.Random(seed), 1000.0
    priorities = [rng.randint(1, 5) for _ in range(12)]
    handed = 0
    for i in range(120):
        now += rng.choice([0.0, 0.01, 0.05, 0.3, 4.0])
        n = rng.randrange(12)
        holder = Holder(f"w{n}", "r", n, 1, priorities[n])
        if rng.random() < 0.3:
            woken = give_back(state, str(holder), now)
            assert permits.give_back("call", None, holder, now) == (woken and woken.split("\x1f")[0]), i
            handed += woken is not None
            continue
        expected = take(limit, state, str(holder), now, 3600.0, holder.priority)
        got = permits.ask("call", None, holder, now)
        if isinstance(expected, Refused):
            assert got == Refused(pytest.approx(expected.until, abs=1e-5), expected.why, "call"), i
        else:
            assert got == Granted(pytest.approx(expected.start_at, abs=1e-5)), i
    assert handed >= 3  # the hand-over was exercised


def test_a_returned_permit_is_handed_to_the_first_waiter(fleet: Fleet) -> None:
    permits = _permits(fleet, max_concurrent=1)
    now = time.time()
    assert permits.ask("call", None, Holder("a", "ra", 1, 1), now) == Granted(pytest.approx(now))
    for wid in ("b", "c"):
        refused = permits.ask("call", None, Holder(wid, f"r{wid}", 2, 1), now)
        assert isinstance(refused, Refused) and refused.why == "concurrency"
    # a later waiter of a higher priority: ahead of "b" and "c", which began less than AGING before it
    assert isinstance(permits.ask("call", None, Holder("d", "rd", 2, 1, priority=1), now + 1), Refused)
    assert permits.give_back("call", None, Holder("a", "ra", 1, 1)) == "d"   # the first in order, once
    inbox = fleet.redis.lrange(fleet.names.run("d").inbox, 0, -1)
    assert [messages.decode(codec.decode(m)) for m in inbox] == [st.AttemptDue(2, 1)]
    assert permits.give_back("call", None, Holder("a", "ra", 1, 1)) is None  # returned already: no one woken
    # the permit is held for "d": a newcomer is refused, "d" asking gets it
    assert isinstance(permits.ask("call", None, Holder("e", "re", 2, 1, priority=1), now + 2), Refused)
    assert isinstance(permits.ask("call", None, Holder("d", "rd", 2, 1, priority=1), now + 2), Granted)
    assert permits.give_back("call", None, Holder("d", "rd", 2, 1)) == "e"   # "e" too began before b's aging
    assert permits.give_back("call", None, Holder("e", "re", 2, 1)) == "b"   # then the longest waiter


def test_the_start_gate_spaces_starts_by_the_servers_clock(fleet: Fleet) -> None:
    permits = _permits(fleet, rate_limit="5/s")
    started = []
    for i in range(3):
        permits.gate("call", None, Holder("w", "r", i, 1))
        seconds, micros = fleet.redis.time()  # as an activity notes its start, right after the gate
        started.append(seconds + micros / 1e6)
    gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps), gaps  # 5/s: the second and third waited for their turn


def test_a_killed_workers_permit_is_returned(private_fleet: Any) -> None:
    """An activity limited to one attempt at a time: the process running the first attempt is killed with
    -9. Its attempt is found lost (WorkerLost) when its lease lapses, which returns its permit, and the
    attempts that waited for it run: none is failed for waiting, the run completes."""
    fleet = private_fleet
    fleet.start_worker("solo").wait_ready()
    ex = fleet.executor()
    key = uuid.uuid4().hex[:8]
    handle = ex.execute("solo_steps", WorkflowOptions(id=f"solo-{key}", input={"key": key, "n": 3}))
    r = redis.Redis.from_url(fleet.url)
    pid = eventually(lambda: r.get(f"test:solo:{key}:pid"), timeout=30, what="the first attempt to start")
    os.kill(int(pid), signal.SIGKILL)
    assert handle.result(timeout=60) == [0, 1, 2]
    history = ex.describe(handle.id).history
    failed = [(e.attrs["seq"], e.attrs["attempt"], e.attrs["error"]["type"]) for e in history
              if e.type == "activity_failed"]
    assert failed == [(1, 1, "WorkerLost")]
    assert {e.attrs["why"] for e in history if e.type == "activity_waiting"} == {"concurrency"}
    started = [raw.decode() for raw in r.lrange(f"test:solo:{key}", 0, -1)]
    assert started[0] == "0 1" and sorted(started[1:]) == ["0 2", "1 1", "2 1"]
