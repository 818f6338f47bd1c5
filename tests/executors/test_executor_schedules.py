"""Durable schedules through every executor's public calls (`create_schedule`, ...): ticks start runs named
by schedule and tick, pause and unpause, trigger, backfill, overlap, delete. Firing itself is what the
executor does on its own (the in-process loop, the fleet's workers, Temporal's server); the fleet's fault
tests are tests/celery/test_schedules_faults.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from beluga import workflow
from beluga.core.cron import utc_text
from beluga.core.errors import ScheduleAlreadyExists, ScheduleNotFound
from beluga.core.schedules import Overlap, ScheduleError, SchedulePolicy, ScheduleSpec, run_id_for
from tests.executors.conftest import Backend

EVERY_SECOND = ScheduleSpec(intervals=((1, 0),))


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def started_ids(ex: workflow.DurableExecutor, sid: str) -> list[str]:
    s = ex.describe_schedule(sid).schedule
    return [f.workflow_id for f in s.recent if f.outcome == "started" and f.workflow_id]


def test_create_describe_list_and_delete(executor: workflow.DurableExecutor, new_id: Callable[[], str]) -> None:
    sid = new_id()
    spec = ScheduleSpec("0 3 * * *", timezone="Europe/Paris", jitter=60)
    made = executor.create_schedule(sid, "wf_echo", "x", spec, note="nightly report", paused=True)
    assert made.schedule.paused and made.schedule.note == "nightly report"
    times = made.next_times
    assert len(times) == 5 and all(b - a > 23 * 3600 for a, b in zip(times, times[1:], strict=False))
    described = executor.describe_schedule(sid)
    assert described.schedule.workflow_type == "wf_echo" and described.schedule.spec.cron == ("0 3 * * *",)
    assert sid in [d.id for d in executor.list_schedules()]
    with pytest.raises(ScheduleAlreadyExists):
        executor.create_schedule(sid, "wf_echo", "x", spec)
    with pytest.raises(ScheduleError):
        executor.create_schedule(new_id(), "wf_echo", "x", ScheduleSpec("61 * * * *"))
    executor.delete_schedule(sid)
    with pytest.raises(ScheduleNotFound):
        executor.describe_schedule(sid)
    assert sid not in [d.id for d in executor.list_schedules()]


def test_ticks_start_one_run_each_until_paused(executor: workflow.DurableExecutor,
                                               new_id: Callable[[], str]) -> None:
    sid = new_id()
    executor.create_schedule(sid, "wf_echo", "tick", EVERY_SECOND, policy=SchedulePolicy(Overlap.ALLOW_ALL))
    wait_for(lambda: len(started_ids(executor, sid)) >= 3)
    paused = executor.pause_schedule(sid, "enough")
    assert paused.schedule.paused and paused.schedule.note == "enough"
    ids = started_ids(executor, sid)
    for wid in ids:
        assert wid.startswith(f"{sid}-") and wid.endswith("Z")
        assert workflow.WorkflowHandle(executor, wid, "").result(timeout=60) == "tick"
    ticks = sorted(ids)
    assert len(set(ticks)) == len(ticks)  # one run per tick
    time.sleep(2.5)
    assert started_ids(executor, sid) == ids  # nothing while paused
    executor.unpause_schedule(sid, "again")
    wait_for(lambda: len(started_ids(executor, sid)) > len(ids))
    executor.delete_schedule(sid)


def test_trigger_and_backfill_start_runs_at_once(executor: workflow.DurableExecutor,
                                                 new_id: Callable[[], str]) -> None:
    sid = new_id()
    executor.create_schedule(sid, "wf_echo", "now", ScheduleSpec("0 0 1 1 *"), paused=True)
    executor.trigger_schedule(sid)
    wait_for(lambda: len(started_ids(executor, sid)) == 1)  # at once here; Temporal's server starts it soon after
    (wid,) = started_ids(executor, sid)
    assert workflow.WorkflowHandle(executor, wid, "").result(timeout=60) == "now"
    start = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    spec_ticks = [1_700_006_400.0 + 86400 * k for k in range(3)]  # three midnights... of the backfill spec
    executor.delete_schedule(sid)
    executor.create_schedule(sid, "wf_echo", "back", ScheduleSpec("0 0 * * *"), paused=True)
    executor.backfill_schedule(sid, start, start + 3 * 86400)
    for tick in spec_ticks:
        got = workflow.WorkflowHandle(executor, run_id_for(sid, tick), "").result(timeout=60)
        assert got == "back", utc_text(tick)
    executor.delete_schedule(sid)


@pytest.mark.not_temporal("Temporal starts a backfilled tick again when its run has closed (its schedules "
                          "reuse workflow ids); Beluga's schedules start each tick's run once")
def test_a_tick_backfilled_twice_starts_one_run(executor: workflow.DurableExecutor,
                                                new_id: Callable[[], str]) -> None:
    sid = new_id()
    executor.create_schedule(sid, "wf_echo", "back", ScheduleSpec("0 0 * * *"), paused=True)
    tick = 1_700_006_400.0
    executor.backfill_schedule(sid, tick, tick)
    handle = workflow.WorkflowHandle(executor, run_id_for(sid, tick), "")
    assert handle.result(timeout=60) == "back"
    run_id = executor.describe(handle.id).run_id
    executor.backfill_schedule(sid, tick - 60, tick + 60)
    assert executor.describe(handle.id).run_id == run_id
    executor.delete_schedule(sid)


def test_skip_overlap_starts_nothing_while_a_run_is_open(executor: workflow.DurableExecutor,
                                                          new_id: Callable[[], str]) -> None:
    sid = new_id()
    executor.create_schedule(sid, "wf_wait_signal", "go", EVERY_SECOND)  # each run waits for a signal
    wait_for(lambda: len(started_ids(executor, sid)) == 1)
    wait_for(lambda: executor.describe_schedule(sid).schedule.skipped >= 2)
    (first,) = started_ids(executor, sid)
    executor.signal(first, workflow.Signal("go", "done"))
    wait_for(lambda: len(started_ids(executor, sid)) == 2)
    executor.pause_schedule(sid)
    for wid in started_ids(executor, sid)[1:]:
        executor.cancel(wid)
    executor.delete_schedule(sid)


@pytest.mark.in_process  # the fleet's client accepts the names its workers announce
@pytest.mark.not_temporal("Temporal's schedules take any workflow type name; the worker that runs it decides")
def test_schedules_of_unknown_workflows_are_refused_in_process(executor_factory: Backend,
                                                               new_id: Callable[[], str]) -> None:
    with pytest.raises(workflow.ConfigurationError):
        executor_factory.executor().create_schedule(new_id(), "no_such_workflow", None, EVERY_SECOND)


def test_two_executors_on_the_same_runs_fire_each_tick_once(executor_factory: Backend,
                                                             new_id: Callable[[], str]) -> None:
    """In-process: two executors (two processes in spirit) on one store both fire schedules; the fleet's
    two workers, and Temporal's server, likewise. Every tick of a bounded spec starts exactly one run."""
    first, second = executor_factory.executor(), executor_factory.executor()
    sid = new_id()
    start = float(int(time.time()) + 2)
    spec = ScheduleSpec(intervals=((1, 0),), start_at=start, end_at=start + 3)
    first.create_schedule(sid, "wf_echo", "once", spec, policy=SchedulePolicy(Overlap.ALLOW_ALL))

    def done() -> bool:
        d = second.describe_schedule(sid)
        return d.schedule.started >= 4 and not d.next_times

    wait_for(done)
    time.sleep(1.0)
    s = second.describe_schedule(sid).schedule
    ids = [f.workflow_id for f in s.recent if f.outcome == "started"]
    assert ids == [run_id_for(sid, start + k) for k in range(4)] and s.started == 4
    for wid in ids:
        assert workflow.WorkflowHandle(first, wid, "").result(timeout=60) == "once"
    first.delete_schedule(sid)


def test_schedules_through_middleware(executor: workflow.DurableExecutor, new_id: Callable[[], str]) -> None:
    """An executor wrapped by middleware (`with_tracing()`, ...) hands schedule calls to the one inside."""
    from beluga.middleware import DelegatingExecutor

    wrapped = DelegatingExecutor(executor)
    sid = new_id()
    made = wrapped.create_schedule(sid, "wf_echo", "x", ScheduleSpec("@daily"), paused=True)
    assert made.schedule.paused and executor.describe_schedule(sid).schedule.workflow_type == "wf_echo"
    wrapped.delete_schedule(sid)
    with pytest.raises(ScheduleNotFound):
        executor.describe_schedule(sid)
