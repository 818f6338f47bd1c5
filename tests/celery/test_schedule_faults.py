"""Schedules through faults, on real `celery worker` processes and a real redis-server (append-only file
on): workers killed with `kill -9` (one at a time, and all of them for a while), and Redis restarted and
killed. Checked from what the runs themselves recorded (tests.celery.workflows.wf_scheduled notes each run
id under its workflow id): every tick of the spec started a run (none missed: the outages are within the
catch-up window) and no tick started two (one run id per tick's workflow id)."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from beluga import workflow
from beluga.core.schedules import Interval, Overlap, SchedulePolicy, ScheduleSpec, run_id_for
from tests.fleet import WORKER_IMPORTS, RedisProcess, Worker, fleet_env

TICKS = 22  # one a second: the faults below end by the 20th
LEASE = 2.0


class ScheduleFleet:
    def __init__(self, tmp: Path, server: RedisProcess) -> None:
        self.tmp, self.server = tmp, server
        self.env = fleet_env(server.url, server.url, BELUGA_LEASE_SECONDS=str(LEASE), BELUGA_IMPORTS=WORKER_IMPORTS)
        self.workers: list[Worker] = []
        self.count = 0

    def start_worker(self) -> Worker:
        self.count += 1
        worker = Worker(self.env, f"s{self.count}", self.tmp, concurrency=2)
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.proc.poll() is None]

    def executor(self) -> workflow.DurableExecutor:
        return workflow.new("celery", workflow.Config(extra={"broker_url": self.server.url,
                                                              "redis_url": self.server.url}))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def schedule_fleet(tmp_path: Path) -> Iterator[ScheduleFleet]:
    server = RedisProcess(tmp_path, "redis").start()
    fleet = ScheduleFleet(tmp_path, server)
    try:
        yield fleet
    finally:
        fleet.stop()
        server.kill9()


def every_second_schedule(ex: workflow.DurableExecutor, key: str, lead: float = 4.0) -> list[float]:
    """A schedule firing each second for TICKS seconds from a little ahead; returns its ticks."""
    first = math.ceil(time.time() + lead)
    spec = ScheduleSpec(intervals=(Interval(1),), start_at=first, end_at=first + TICKS - 1)
    ex.create_schedule(key, "wf_scheduled", key, spec,
                       policy=SchedulePolicy(Overlap.ALLOW_ALL, catchup_window=60))
    return [first + k for k in range(TICKS)]


def recorded(url: str, key: str) -> dict[str, set[str]]:
    """What the runs noted: workflow id -> the run ids that ran under it."""
    r = redis.Redis.from_url(url)
    return {wid.decode(): {x.decode() for x in r.smembers(f"test:scheduled:{key}:{wid.decode()}")}
            for wid in r.smembers(f"test:scheduled:{key}")}


def settle(fleet: ScheduleFleet, key: str, ticks: list[float], timeout: float = 90.0) -> dict[str, set[str]]:
    """Wait until every tick's run noted itself (or the timeout), then a little more for any duplicate."""
    want = {run_id_for(key, t) for t in ticks}
    deadline = time.monotonic() + max(0.0, ticks[-1] - time.time()) + timeout
    while time.monotonic() < deadline:
        try:
            if want <= set(recorded(fleet.server.url, key)):
                break
        except redis.ConnectionError:
            pass
        time.sleep(0.5)
    time.sleep(3 * LEASE)  # a second start of any tick (a pending action done again) would show by now
    return recorded(fleet.server.url, key)


def check(got: dict[str, set[str]], key: str, ticks: list[float], ex: workflow.DurableExecutor) -> None:
    want = {run_id_for(key, t) for t in ticks}
    missing = sorted(want - set(got))
    assert not missing, f"{len(missing)} ticks never started a run: {missing[:5]}"
    extra = sorted(set(got) - want)
    assert not extra, f"runs outside the spec's ticks: {extra[:5]}"
    twice = {wid: runs for wid, runs in got.items() if len(runs) != 1}
    assert not twice, f"ticks started more than once: {twice}"
    for wid in want:
        state = ex.describe(wid)
        assert state.status is workflow.WorkflowStatus.COMPLETED, (wid, state.status)
        assert state.run_id in got[wid]
    s = ex.describe_schedule(key).schedule
    assert s.next_tick is None and s.pending == () and s.started == TICKS and s.missed == 0


def test_workers_killed_with_sigkill(schedule_fleet: ScheduleFleet) -> None:
    """Three workers fire one schedule; one after another is killed with -9 and replaced, then every
    worker is killed at once and none runs for 4 s (ticks due then fire on restart: the catch-up)."""
    fleet = schedule_fleet
    for w in [fleet.start_worker() for _ in range(3)]:
        w.wait_ready()
    ex = fleet.executor()
    key = f"faults-kill-{uuid.uuid4().hex[:6]}"
    ticks = every_second_schedule(ex, key)
    rng = random.Random(17)
    while time.time() < ticks[0] + 8:
        time.sleep(rng.uniform(0.6, 1.6))
        victim = rng.choice(fleet.live())
        victim.kill9()
        fleet.start_worker()
    time.sleep(max(0.0, ticks[0] + 12 - time.time()))
    for w in fleet.live():
        w.kill9()
    time.sleep(4.0)
    for w in [fleet.start_worker() for _ in range(2)]:
        w.wait_ready()
    check(settle(fleet, key, ticks), key, ticks, ex)
    ex.close()


def test_redis_restarted_and_killed(schedule_fleet: ScheduleFleet) -> None:
    """Two workers fire one schedule while its Redis (broker and histories, append-only file on) is
    restarted cleanly three times and killed with -9 twice, each time down for about a second."""
    fleet = schedule_fleet
    for w in [fleet.start_worker() for _ in range(2)]:
        w.wait_ready()
    ex = fleet.executor()
    key = f"faults-redis-{uuid.uuid4().hex[:6]}"
    ticks = every_second_schedule(ex, key)
    time.sleep(max(0.0, ticks[0] + 1.5 - time.time()))
    for kill in (False, True, False, True, False):
        fleet.server.restart(down_for=1.0, kill=kill)
        time.sleep(2.5)
    check(settle(fleet, key, ticks), key, ticks, ex)
    ex.close()
