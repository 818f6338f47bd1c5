"""Eager activities (BELUGA_EAGER_ACTIVITIES): a worker that finishes an attempt (or a coordinate task
that starts a run) runs the run's next activity in the same task, without the broker, at most N times
in a row; a worker killed with -9 in the middle of an eager attempt loses nothing and duplicates nothing."""

from __future__ import annotations

import time
import uuid

import redis

from beluga import workflow
from beluga.core.records import EventType as E
from tests.celery.test_faults import _check_history
from tests.timing import SLACK


def _trace(fleet, wid: str) -> list[tuple[int, int, str, int]]:
    """(seq, attempt, Celery task id, pid) of each attempt as it started."""
    r = redis.Redis.from_url(fleet.url)
    out = []
    for raw in r.lrange(f"test:trace:{wid}", 0, -1):
        seq, attempt, task_id, pid = raw.decode().split(":")
        out.append((int(seq), int(attempt), task_id, int(pid)))
    return out


def _groups(trace: list[tuple[int, int, str, int]]) -> list[int]:
    """How many consecutive attempts each Celery task ran."""
    sizes: list[int] = []
    last = None
    for _, _, task_id, _ in trace:
        if task_id == last:
            sizes[-1] += 1
        else:
            sizes.append(1)
            last = task_id
    return sizes


def _run(ex: workflow.DurableExecutor, arg: dict) -> str:
    wid = f"eager-{uuid.uuid4().hex[:8]}"
    handle = ex.execute("fleet_traced_steps", workflow.WorkflowOptions(id=wid, input=arg))
    assert handle.result(timeout=60) == sum(range(1, arg["steps"] + 1))
    return wid


def test_eager_steps_run_in_the_task_before_them_and_the_bound_holds(private_fleet) -> None:
    fleet = private_fleet
    fleet.start_worker("eager", concurrency=1, BELUGA_EAGER_ACTIVITIES="3").wait_ready()
    ex = fleet.executor()
    wid = _run(ex, {"steps": 10})
    trace = _trace(fleet, wid)
    assert [(seq, attempt) for seq, attempt, _, _ in trace] == [(seq, 1) for seq in range(1, 11)]
    # the coordinate task that started the run runs its first 3 attempts; then the run goes through the
    # broker: an activity task, and 3 eager attempts in it; and again
    assert _groups(trace) == [3, 4, 3]
    assert len({pid for *_, pid in trace}) == 1
    _check_history(ex.describe(wid).history)
    # an activity with a timeout goes through the broker, and its task (under a Celery time limit, which
    # covers the whole task) runs nothing eagerly after it
    wid = _run(ex, {"steps": 6, "timeout_at": [2, 3]})
    assert _groups(_trace(fleet, wid)) == [2, 1, 1, 2]
    # an activity that names its queue goes through the broker (the task that runs it may go on eagerly)
    wid = _run(ex, {"steps": 4, "queue_at": [1]})
    assert _groups(_trace(fleet, wid)) == [1, 3]


def test_eager_activities_off(private_fleet) -> None:
    fleet = private_fleet
    fleet.start_worker("plain", concurrency=1, BELUGA_EAGER_ACTIVITIES="0").wait_ready()
    wid = _run(fleet.executor(), {"steps": 5})
    assert _groups(_trace(fleet, wid)) == [1] * 5


def test_a_worker_killed_during_an_eager_attempt(private_fleet) -> None:
    """The eager attempt was recorded as dispatched, with a lease deadline, by the append before it: once
    its worker is gone, the scheduler of another worker dispatches it again within the lease (3 s here),
    as attempt 2 under the retry policy; the steps before it are not run again, no event is recorded twice."""
    fleet = private_fleet
    doomed = fleet.start_worker("doomed", concurrency=1, BELUGA_EAGER_ACTIVITIES="8").wait_ready()
    ex = fleet.executor()
    wid = f"eager-kill-{uuid.uuid4().hex[:6]}"
    handle = ex.execute("fleet_traced_steps", workflow.WorkflowOptions(
        id=wid, input={"steps": 5, "slow_seq": 3, "sleep": 60.0}))
    deadline = time.monotonic() + 30
    while not any(seq == 3 for seq, *_ in _trace(fleet, wid)):
        assert time.monotonic() < deadline, _trace(fleet, wid)
        time.sleep(0.05)
    trace = _trace(fleet, wid)
    assert _groups(trace) == [3]  # seq 1 to 3 run eagerly in the coordinate task that started the run
    time.sleep(0.3)
    doomed.kill9()
    killed_at = time.time()
    fleet.start_worker("survivor", concurrency=1, BELUGA_EAGER_ACTIVITIES="8").wait_ready()
    ready_at = time.time()
    assert handle.result(timeout=60) == sum(range(1, 6))
    history = ex.describe(wid).history
    _check_history(history)
    failed = [e for e in history if e.type == E.ACTIVITY_FAILED]
    assert [(e.attrs["seq"], e.attrs["attempt"], e.attrs["error"]["type"]) for e in failed] == [(3, 1, "WorkerLost")]
    restarted = next(e for e in history if e.type == E.ACTIVITY_STARTED and e.attrs["seq"] == 3
                     and e.attrs["attempt"] == 2)
    # dispatched again once the lease (3 s, tests.fleet.fleet_env) ran out and a worker was there to see it
    # (a loaded machine may start the survivor after the lease): a scheduler round and a dispatch later,
    # not after the broker's visibility timeout
    lost_for = restarted.timestamp - max(killed_at + 3.0, ready_at)
    assert lost_for < SLACK, (lost_for, restarted.timestamp - killed_at)
    r = redis.Redis.from_url(fleet.url)
    state = ex.describe(wid)
    runs = {seq: int(r.hget("test:runs", f"{wid}:{state.run_id}:{seq}") or 0) for seq in range(1, 6)}
    assert runs == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}  # attempt 1 of seq 3 died before its effect
    assert [(seq, attempt) for seq, attempt, *_ in _trace(fleet, wid)] == [
        (1, 1), (2, 1), (3, 1), (3, 2), (4, 1), (5, 1)]


def test_no_eager_slot_under_a_rate_limit_or_a_time_limit() -> None:
    """Celery applies rate and time limits to a whole task: a task under either runs no eager attempt."""
    from types import SimpleNamespace

    from beluga.celery import tasks
    from beluga.settings import Settings

    conf = SimpleNamespace(task_time_limit=None, task_soft_time_limit=None)

    def task(rate_limit: str | None = None, timelimit: tuple = (None, None)) -> SimpleNamespace:
        return SimpleNamespace(worker=SimpleNamespace(settings=Settings(eager_activities=8)),
            app=SimpleNamespace(conf=conf), rate_limit=rate_limit, time_limit=None,
            soft_time_limit=None, request=SimpleNamespace(is_eager=False, timelimit=timelimit))

    assert tasks._eager_allowed(task())
    assert not tasks._eager_allowed(task(rate_limit="10/s"))
    assert not tasks._eager_allowed(task(timelimit=(20, 10)))
    conf.task_soft_time_limit = 30
    assert not tasks._eager_allowed(task())
