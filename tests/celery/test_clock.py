"""The fleet's clock (beluga/celery/clock.py) with injected clocks: what it measures, when it measures
again, what it does when the server does not answer, and that the process's wall clock plays no part.
Then against a real server: the time it gives is the server's, one `TIME` per refresh interval."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from beluga.celery.clock import RETRY_SECONDS, FleetClock, redis_time
from beluga.celery.fleet import Fleet
from beluga.stores.redis import RedisStore


class Server:
    """A server clock `offset` seconds from the injected monotonic clock, whose `TIME` takes `rtt`
    seconds of that clock to answer (the server reads its clock `at` of the way through the trip)."""

    def __init__(self, mono: Mono, offset: float, rtt: float = 0.0, at: float = 0.5) -> None:
        self.mono, self.offset, self.rtt, self.at = mono, offset, rtt, at
        self.calls = 0
        self.down = False

    def __call__(self) -> float:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("server away")
        self.mono.t += self.rtt * self.at
        reading = self.mono.t + self.offset
        self.mono.t += self.rtt * (1 - self.at)
        return reading


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_now_is_the_server_time_measured_at_the_midpoint_of_the_round_trip() -> None:
    mono = Mono()
    server = Server(mono, offset=1_700_000_000.0, rtt=0.010)
    clock = FleetClock(server, refresh_seconds=5.0, monotonic=mono)
    first = clock.now()
    assert server.calls == 1
    assert first == pytest.approx(mono.t + server.offset, abs=1e-6)  # read mid-trip: exact
    assert clock.uncertainty == pytest.approx(0.005)
    mono.t += 2.5
    assert clock.now() == pytest.approx(first + 2.5, abs=1e-6)      # extrapolated, no round trip
    assert server.calls == 1


@pytest.mark.parametrize("at", [0.0, 1.0])
def test_the_error_is_at_most_half_the_round_trip(at: float) -> None:
    """Wherever in the trip the server read its clock, `now()` is within `uncertainty` of it."""
    mono = Mono()
    server = Server(mono, offset=50.0, rtt=0.2, at=at)
    clock = FleetClock(server, monotonic=mono)
    got = clock.now()
    assert clock.uncertainty == pytest.approx(0.1)
    assert abs(got - (mono.t + server.offset)) <= clock.uncertainty + 1e-9


def test_measures_again_once_the_measurement_is_older_than_the_refresh_interval() -> None:
    mono = Mono()
    server = Server(mono, offset=10.0)
    clock = FleetClock(server, refresh_seconds=5.0, monotonic=mono)
    for _ in range(100):   # a scheduler asking every 0.2 s for 19.8 s
        clock.now()
        mono.t += 0.2
    assert server.calls == 4  # at 0, 5, 10, 15 s: one TIME per interval, however often it is asked
    server.offset = 12.0      # the server's clock stepped 2 s forward (NTP on the Redis host)
    mono.t += 5.0
    assert clock.now() == pytest.approx(mono.t + 12.0)


def test_the_process_wall_clock_plays_no_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock 120 s ahead, or stepped by NTP between two refreshes, changes nothing."""
    mono = Mono()
    server = Server(mono, offset=5.0)
    clock = FleetClock(server, monotonic=mono)
    before = clock.now()
    monkeypatch.setattr(time, "time", lambda: 1e12)
    mono.t += 1.0
    assert clock.now() == pytest.approx(before + 1.0)


def test_a_failed_refresh_keeps_the_last_measurement_and_tries_again_a_second_later() -> None:
    mono = Mono()
    server = Server(mono, offset=100.0)
    clock = FleetClock(server, refresh_seconds=5.0, monotonic=mono)
    clock.now()
    server.down = True
    mono.t += 6.0
    assert clock.now() == pytest.approx(mono.t + 100.0)   # the last measurement serves
    assert server.calls == 2
    mono.t += RETRY_SECONDS / 2
    clock.now()
    assert server.calls == 2                               # not again at once
    server.down = False
    mono.t += RETRY_SECONDS
    server.offset = 101.0
    assert clock.now() == pytest.approx(mono.t + 101.0)   # measured again
    assert server.calls == 3


def test_without_any_measurement_the_server_error_is_raised() -> None:
    mono = Mono()
    server = Server(mono, offset=0.0)
    server.down = True
    clock = FleetClock(server, monotonic=mono)
    assert clock.cached() is None
    with pytest.raises(redis.ConnectionError):
        clock.now()


def test_cached_never_asks_the_server() -> None:
    mono = Mono()
    server = Server(mono, offset=3.0)
    clock = FleetClock(server, refresh_seconds=5.0, monotonic=mono)
    clock.now()
    mono.t += 60.0
    assert clock.cached() == pytest.approx(mono.t + 3.0)
    assert server.calls == 1


def test_redis_time() -> None:
    assert redis_time((1_700_000_000, 250_000)) == 1_700_000_000.25
    assert redis_time([b"1700000000", b"5"]) == pytest.approx(1_700_000_000.000005)


# --- against a real server --------------------------------------------------------------------------
@pytest.fixture
def fleet(redis_url: str) -> Iterator[Fleet]:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield Fleet(store, lease_seconds=5.0)
    store.close()


def test_a_fleet_clock_reads_the_history_redis_time_once_per_interval(fleet: Fleet) -> None:
    calls = lambda: fleet.redis.info("commandstats").get("cmdstat_time", {}).get("calls", 0)  # noqa: E731
    before = calls()
    for _ in range(50):
        got = fleet.clock.now()
    server = redis_time(fleet.redis.time())
    assert calls() - before == 2  # the clock's first measurement, and the line above
    assert server - 1.0 < got <= server + 0.001


def test_a_cluster_fleet_reads_one_node_time(cluster_url: str) -> None:
    """On a Redis Cluster, the node serving the `{fleet}` slot, every time."""
    store = RedisStore(cluster_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        fleet = Fleet(store, lease_seconds=5.0)
        node = store.redis.get_node_from_key(f"{store.prefix}:{{fleet}}:clock")
        conn = store.redis.get_redis_connection(node)
        before = conn.info("commandstats").get("cmdstat_time", {}).get("calls", 0)
        got = fleet.clock.now()
        assert conn.info("commandstats").get("cmdstat_time", {}).get("calls", 0) == before + 1
        assert abs(got - redis_time(conn.time())) < 1.0
    finally:
        store.close()


# --- a Celery retry's ETA and due time (beluga/celery/attempts.py) ----------------------------------
def _clock_at(fleet_now: float) -> FleetClock:
    mono = Mono()
    clock = FleetClock(lambda: mono.t + (fleet_now - 1000.0), monotonic=mono)
    clock.now()
    return clock


@pytest.mark.parametrize("skew", [120.0, -120.0])
def test_a_retry_eta_on_the_fleet_clock_is_moved_onto_the_worker_clock(monkeypatch: pytest.MonkeyPatch,
                                                                        skew: float) -> None:
    """The consumer releases the message when the worker's wall clock reaches the ETA: so the ETA moves
    by as much as that clock is off the fleet's."""
    from datetime import datetime, timedelta, timezone

    from beluga.celery.attempts import eta_on_local_clock

    fleet_now = 1_700_000_000.0
    monkeypatch.setattr(time, "time", lambda: fleet_now + skew)
    eta = datetime.fromtimestamp(fleet_now + 2.0, timezone.utc)
    request = type("Request", (), {"_eta": eta})()
    eta_on_local_clock(request, _clock_at(fleet_now))
    assert request._eta == eta + timedelta(seconds=skew)
    unchanged = type("Request", (), {"_eta": eta})()
    monkeypatch.setattr(time, "time", lambda: fleet_now + 0.01)   # a clock within the tolerance
    eta_on_local_clock(unchanged, _clock_at(fleet_now))
    assert unchanged._eta == eta
    eta_on_local_clock(unchanged, FleetClock(lambda: 0.0))         # never measured: left alone
    assert unchanged._eta == eta


def test_an_attempt_delivered_before_its_due_time_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from beluga.celery import attempts

    slept: list[float] = []
    monkeypatch.setattr(attempts.time, "sleep", slept.append)
    clock = _clock_at(5000.0)
    rt = type("Rt", (), {"fleet": type("F", (), {"clock": clock})()})()
    attempts.wait_until_due(rt, {attempts.DUE: clock.cached() + 1.5})
    assert slept and slept[0] == pytest.approx(1.5, abs=1e-3)
    attempts.wait_until_due(rt, {attempts.DUE: clock.cached() - 1.0})   # due already: no wait
    attempts.wait_until_due(rt, {})                                      # no due time: a first attempt
    assert len(slept) == 1
