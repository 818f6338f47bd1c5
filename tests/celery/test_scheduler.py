"""The scheduler's round (beluga/celery/scheduler.py) against a real server: what an idle round costs,
and that the safety nets (lapsed attempts, lost wake-ups) still run when the round includes them. No
workers are started: the round is stepped by hand."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from beluga.celery import scheduler
from beluga.celery.fleet import Fleet
from beluga.stores.redis import SHARDS, RedisStore, shard_of

LEASE = 5.0


@dataclass
class FakeRuntime:
    """What `tick` uses of a worker's Runtime: its fleet and settings, and the wake-ups its sender sends."""

    fleet: Fleet
    woken_shards: list[int] = field(default_factory=list)
    woken_runs: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Any:
        return type("S", (), {"lease_seconds": LEASE})()

    @property
    def sender(self) -> FakeRuntime:  # the wake-ups it sends, recorded here
        return self

    def wake_shard(self, shard: int) -> None:
        self.woken_shards.append(shard)

    def wake(self, workflow_id: str, queue: str | None) -> None:
        self.woken_runs.append(workflow_id)

    def queue_length(self, queue: str) -> int:  # the broker's queue: always empty (its copies are taken)
        return 0

    def publish(self, args: tuple[Any, ...], queue: str, countdown: float | None = None) -> None:
        self.woken_runs.append(f"sent {args[3]} to {queue}")


@pytest.fixture
def rt(redis_url: str) -> Iterator[FakeRuntime]:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield FakeRuntime(Fleet(store, lease_seconds=LEASE))
    store.close()


def _commands(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def _spent(client: redis.Redis, fn: Any) -> dict[str, int]:
    before = _commands(client)
    fn()
    after = _commands(client)
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) and k != "info"}


def test_an_idle_round_reads_one_key_per_shard(rt: FakeRuntime) -> None:
    spent = _spent(rt.fleet.redis, lambda: scheduler.tick(rt, time.time(), safety_nets=False))
    # no script runs while no timer (and no schedule: the one read of the schedules' due set) is due
    assert spent == {"zrangebyscore": SHARDS + 1}
    scheduler.tick(rt, time.time())                       # loads the scripts
    full = _spent(rt.fleet.redis, lambda: scheduler.tick(rt, time.time()))
    # per shard: the timers, the attempts' deadlines, and the sweep (a script reading the dirty set and
    # whether runs wait in the wake set); 112 commands a round before the safety nets ran once a second.
    # The loop's `now` (the fleet's clock) adds one TIME per refresh interval, not per round: see below
    assert full == {"zrangebyscore": 3 * SHARDS + 1, "evalsha": SHARDS, "scard": SHARDS}
    assert rt.woken_shards == []


def test_a_round_without_safety_nets_still_drains_due_timers(rt: FakeRuntime) -> None:
    wid = "timer-run"
    rt.fleet.arm(wid, time.time() - 1, {"k": "timer", "n": 1})
    assert scheduler.tick(rt, time.time(), safety_nets=False) == 1
    assert rt.woken_shards == [shard_of(wid)]
    assert rt.fleet.redis.llen(rt.fleet.store.keys(wid)[2]) == 1


def test_lapsed_attempts_are_reclaimed_only_by_a_round_with_safety_nets(rt: FakeRuntime) -> None:
    wid = "lost-run"
    member = f"{wid}\x001\x001"
    rt.fleet.redis.zadd(rt.fleet.shard_key(wid, "dispatched"), {member: time.time() - 1})
    assert scheduler.tick(rt, time.time(), safety_nets=False) == 0
    assert rt.woken_runs == []
    assert scheduler.tick(rt, time.time()) == 1
    assert rt.woken_runs == [wid]                        # reclaimed: its failure waits in the run's inbox
    assert rt.fleet.redis.zscore(rt.fleet.shard_key(wid, "dispatched"), member) is None


def test_the_loop_clock_costs_one_time_command_per_refresh_interval(rt: FakeRuntime) -> None:
    """The loop takes each round's `now` from the fleet's clock (the history Redis's TIME): a round
    costs no TIME of its own; the clock asks once per `refresh_seconds` (5 s: 0.2 commands a second)."""
    rt.fleet.clock.now()
    spent = _spent(rt.fleet.redis, lambda: [scheduler.tick(rt, rt.fleet.clock.now(), safety_nets=False)
                                            for _ in range(5)])
    assert spent == {"zrangebyscore": 5 * (SHARDS + 1)}
    assert rt.fleet.clock.refresh_seconds == 5.0


@pytest.mark.parametrize(("lease", "interval", "expected"), [
    (15.0, 0.2, 1.0),   # the default lease: once a second
    (2.0, 0.2, 0.4),    # a short lease: five times per lease
    (0.5, 0.2, 0.2),    # never more often than the rounds
])
def test_safety_interval(lease: float, interval: float, expected: float) -> None:
    assert scheduler.safety_interval(lease, interval) == pytest.approx(expected)


def test_copies_that_leave_a_consumed_queue_untaken_are_reported_each_time_then_sent_again(
        rt: FakeRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """An untaken attempt whose queue live workers consume is sent again whenever its queue is empty;
    once SWALLOWED_COPIES copies left the queue and none was claimed, each new copy comes with a warning
    that says what takes them (a worker of another deployment on the broker), and the attempt still waits:
    failing it could fail a call that never ran. Stepped on an injected clock."""
    from beluga.celery.fleet import Waiting
    from beluga.runs import new_run_state

    wid, now = "swallowed-run", 1_000_000.0
    state = new_run_state("w", wid, None, None, None, now)
    rt.fleet.store.create(state)
    member = f"{wid}\x002\x001"
    rt.fleet.redis.zadd(rt.fleet.shard_key(wid, "dispatched"), {member: now + LEASE})
    rt.fleet.note_sent(Waiting((wid, state.run_id, 2, 1, "act", None, {}), "beluga", now))
    rt.fleet.announce_queues(["beluga"], 1e9)
    sent: list[int] = []
    for _ in range(scheduler.SWALLOWED_COPIES + 2):
        deadline = rt.fleet.redis.zscore(rt.fleet.shard_key(wid, "dispatched"), member)
        now = deadline + 0.1
        before = len(rt.woken_runs)
        with caplog.at_level("INFO", logger="beluga.scheduler"):
            scheduler.tick(rt, now)
        sent.append(len(rt.woken_runs) - before)
    assert sent == [1] * (scheduler.SWALLOWED_COPIES + 2)      # a copy each look, never reclaimed as lost
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "another deployment" in r.getMessage()]
    assert len(warnings) == 2                                  # the 4th and 5th copies
    assert "3 copies sent to queue 'beluga'" in warnings[0].getMessage()
    assert rt.fleet.redis.hget(rt.fleet.shard_key(wid, "waiting"), member) is not None  # still waiting
