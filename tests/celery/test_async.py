"""`async def` activities with real `celery worker` processes: one pool process (prefork -c 1, the threads
pool, solo, and gevent) keeps many attempts in flight at once on its event loop, no
more than BELUGA_ASYNC_CONCURRENCY; and a worker killed with -9 holding many of them in flight loses
nothing: its attempts are reclaimed (WorkerLost) and each run's effect happens once. The probes record
what they saw in Redis (`fleet_async_probe`); nothing here is judged by wall-clock time."""

from __future__ import annotations

import collections
import uuid

import pytest
import redis

from beluga import workflow
from beluga.core.records import EventType as E
from tests.celery.test_faults import _check_history
from tests.executors.helpers import eventually

POOLS = ["prefork", "threads", "solo", "gevent"]  # gevent: in the test extra


def _starts(r: redis.Redis, key: str) -> list[tuple[str, int, int, int]]:
    """(workflow id, attempt, pid, probes in flight in that process as it started) of each start."""
    out = []
    for raw in r.lrange(f"test:async:{key}:starts", 0, -1):
        wid, attempt, pid, now = raw.decode().rsplit(":", 3)
        out.append((wid, int(attempt), int(pid), int(now)))
    return out


def _run_all(ex: workflow.DurableExecutor, key: str, n: int, **arg: object) -> list[workflow.WorkflowHandle]:
    return [ex.execute("fleet_async_one", workflow.WorkflowOptions(id=f"{key}-{i}", input={"key": key, "i": i, **arg}))
            for i in range(n)]


@pytest.mark.parametrize("pool", POOLS)
def test_one_process_keeps_many_async_attempts_in_flight(private_fleet, pool: str) -> None:
    fleet = private_fleet
    fleet.start_worker(f"async-{pool}", concurrency=1, pool=pool).wait_ready()
    ex = fleet.executor()
    # each probe waits until all n are in flight at once in its process: a pool that ran them one (or a
    # few) at a time would leave each waiting its full 60 s (gevent, slow at every step, proves it with 10)
    key, n = f"many-{uuid.uuid4().hex[:6]}", 10 if pool == "gevent" else 30
    handles = _run_all(ex, key, n, barrier=n, wait=60.0)
    assert [h.result(timeout=90) for h in handles] == list(range(n))
    r = redis.Redis.from_url(fleet.url)
    starts = _starts(r, key)
    assert len({pid for _, _, pid, _ in starts}) == 1 and {a for _, a, _, _ in starts} == {1}
    assert max(now for *_, now in starts) == n  # all n in flight in the one process
    assert r.hlen(f"test:async:{key}:effects") == n


def test_async_concurrency_bounds_the_attempts_in_flight(private_fleet) -> None:
    fleet = private_fleet
    fleet.start_worker("bounded", concurrency=1, BELUGA_ASYNC_CONCURRENCY="4").wait_ready()
    ex = fleet.executor()
    key, n = f"bounded-{uuid.uuid4().hex[:6]}", 12
    handles = _run_all(ex, key, n, barrier=4, wait=30.0)  # each waits until 4 are in flight: they never are 5
    assert [h.result(timeout=60) for h in handles] == list(range(n))
    seen = [now for *_, now in _starts(redis.Redis.from_url(fleet.url), key)]
    assert len(seen) == n and max(seen) == 4


def test_a_worker_killed_with_many_async_attempts_in_flight(private_fleet) -> None:
    """The attempts were claimed and their messages acknowledged: only their deadlines, renewed by the
    process running them, say they are alive. Once the worker is killed, another worker's scheduler
    reclaims each within the lease (3 s here) as lost (WorkerLost) and dispatches attempt 2, which runs
    on the new worker; each run completes with its effect recorded once, no event twice."""
    fleet = private_fleet
    doomed = fleet.start_worker("doomed", concurrency=1).wait_ready()
    ex = fleet.executor()
    key, n = f"killed-{uuid.uuid4().hex[:6]}", 20
    handles = _run_all(ex, key, n, wait=120.0)  # they wait for the release flag
    r = redis.Redis.from_url(fleet.url)
    eventually(lambda: len(_starts(r, key)) == n, timeout=60, what="all 20 attempts in flight on the doomed worker")
    assert {(a, pid) for _, a, pid, _ in _starts(r, key)} == {(1, doomed.pool_pids()[0])}
    doomed.kill9()
    fleet.start_worker("survivor", concurrency=1).wait_ready()
    eventually(lambda: len(_starts(r, key)) == 2 * n, timeout=60, what="attempt 2 of each run started")
    r.set(f"test:async:{key}:release", 1)
    assert [h.result(timeout=60) for h in handles] == list(range(n))
    effects = r.hgetall(f"test:async:{key}:effects")
    assert len(effects) == n and {v.decode().split(":")[0] for v in effects.values()} == {"2"}
    assert r.llen(f"test:async:{key}:effect-log") == n  # each once
    for h in handles:
        history = ex.describe(h.id).history
        _check_history(history)
        (failed,) = [e for e in history if e.type == E.ACTIVITY_FAILED]
        assert failed.attrs["error"]["type"] == "WorkerLost"
    assert collections.Counter(a for _, a, _, _ in _starts(r, key)) == {1: n, 2: n}


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_warm_shutdown_waits_for_the_async_attempts_in_flight(private_fleet, pool: str) -> None:
    """SIGTERM to the worker: its tasks ended when they handed their attempts to the loop, yet the process
    running them (a prefork pool process, or the worker itself) waits for them to end and be reported
    before it exits, as Celery waits for running tasks: every run completes on its first attempt, none is
    left to be reclaimed."""
    import os
    import signal

    fleet = private_fleet
    worker = fleet.start_worker(f"stopping-{pool}", concurrency=1, pool=pool).wait_ready()
    ex = fleet.executor()
    key, n = f"warm-{uuid.uuid4().hex[:6]}", 5
    handles = _run_all(ex, key, n, wait=60.0)
    r = redis.Redis.from_url(fleet.url)
    eventually(lambda: len(_starts(r, key)) == n, timeout=60, what="all 5 attempts in flight")
    os.kill(worker.proc.pid, signal.SIGTERM)
    eventually(lambda: "waiting for 5 async activity attempts in flight to end" in worker.log(), timeout=30,
               what="the pool process waiting for its attempts")
    r.set(f"test:async:{key}:release", 1)
    worker.proc.wait(30)
    for h in handles:
        state = ex.describe(h.id)
        assert state.status is workflow.WorkflowStatus.COMPLETED, state
        assert not [e for e in state.history if e.type == E.ACTIVITY_FAILED]


@pytest.mark.parametrize("eager", ["3", "0"])
def test_async_steps_start_eagerly_on_the_loop_within_the_bound(private_fleet, eager: str) -> None:
    """A run of 10 async activities in a row: the coordinate task that starts it hands the first to the
    loop, whose report starts the next right there, BELUGA_EAGER_ACTIVITIES (3) in a row; then one goes
    through the broker (an activity task), and its report goes on eagerly again: 2 activity tasks in all.
    With eager activities off, each of the 10 is a task."""
    fleet = private_fleet
    worker = fleet.start_worker(f"eager-{eager}", concurrency=1, BELUGA_EAGER_ACTIVITIES=eager).wait_ready()
    ex = fleet.executor()
    handle = ex.execute("fleet_async_steps", workflow.WorkflowOptions(id=f"steps-{uuid.uuid4().hex[:6]}", input=10))
    assert handle.result(timeout=60) == sum(range(1, 11))
    _check_history(ex.describe(handle.id).history)
    tasks = worker.log().count("Task activity:fleet_async_step[")
    received = len([ln for ln in worker.log().splitlines() if "activity:fleet_async_step[" in ln and "received" in ln])
    assert received == (2 if eager == "3" else 10), tasks


def test_a_rate_limited_async_attempt_goes_through_the_start_gate(fleet) -> None:
    """The rate's last check where the attempt runs (start_gate.lua) applies to async attempts as to plain
    ones: each attempt finds itself noted by the gate as it starts."""
    ex = fleet.executor()
    key = uuid.uuid4().hex[:6]
    handle = ex.execute("wf_async_gated", workflow.WorkflowOptions(id=f"agate-{key}", input={"key": key}))
    assert handle.result(timeout=60) == [True, True, True]
