"""`WorkflowEnvironment`: workflows that wait for days run in milliseconds, with no Redis and no worker;
time skips only while the test waits for a result or calls `env.sleep()`, and only when nothing runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from beluga import workflow
from beluga.testing import WorkflowEnvironment

DAY = 86_400.0
CALLS: list[tuple[str, int]] = []


@workflow.activity(name="testing_env_remind")
def remind(user: str) -> str:
    info = workflow.activity_info()
    CALLS.append((user, info.attempt))
    return f"reminded {user}"


HOURLY = workflow.RetryPolicy(max_attempts=3, initial_interval=3600, max_interval=7200, backoff_coefficient=1.0)


@workflow.activity(name="testing_env_flaky", retry=HOURLY)
def flaky(n: int) -> int:
    if workflow.activity_info().attempt < 3:
        raise RuntimeError("not yet")
    return n * 2


@workflow.defn(name="testing_env_sleepy")
def sleepy(ctx: workflow.WorkflowContext, user: str) -> dict:
    start = ctx.now()
    ctx.sleep(timedelta(days=3))
    reminded = ctx.execute_activity(remind, user)
    ctx.sleep(timedelta(days=4))
    return {"slept_days": (ctx.now() - start).total_seconds() / DAY, "reminded": reminded}


@workflow.defn(name="testing_env_approval")
def approval(ctx: workflow.WorkflowContext, order: str) -> str:
    ctx.set_query_handler("stage", lambda: "waiting")
    try:
        return f"{order}: {ctx.receive_signal('approve').receive(timeout=timedelta(hours=1))}"
    except TimeoutError:
        return f"{order}: expired"


@workflow.defn(name="testing_env_ticks")
def ticks(ctx: workflow.WorkflowContext, n: int) -> list[float]:
    start = ctx.now().timestamp()
    seen = []
    for _ in range(n):
        ctx.sleep(3600)
        seen.append(round(ctx.now().timestamp() - start))
    return seen


@workflow.defn(name="testing_env_retries")
def retries(ctx: workflow.WorkflowContext, n: int) -> int:
    return ctx.execute_activity(flaky, n)


@pytest.fixture
def env() -> Any:
    CALLS.clear()
    with WorkflowEnvironment() as e:
        yield e


def test_a_week_of_sleeping_runs_in_well_under_a_second(env: WorkflowEnvironment) -> None:
    handle = env.execute(sleepy, "ann", id="sleepy-1")
    result = handle.result(timeout=10)  # real seconds: a week that was waited, not skipped, fails here
    assert env.clock() - time.time() >= 7 * DAY - 60  # the environment's clock skipped the week ahead
    assert result["reminded"] == "reminded ann" and result["slept_days"] == pytest.approx(7.0, abs=0.01)
    assert CALLS == [("ann", 1)]
    started, closed = env.describe("sleepy-1").history[0], env.describe("sleepy-1").history[-1]
    assert closed.timestamp - started.timestamp == pytest.approx(7 * DAY, abs=60)


def test_time_does_not_skip_before_the_test_waits(env: WorkflowEnvironment) -> None:
    """The signal sent right after the start wins over the hour-long timeout: nothing skipped it."""
    handle = env.execute(approval, "A-1")
    assert env.query(handle.id, "stage") == "waiting"
    env.signal(handle.id, "approve", "yes")
    assert handle.result(timeout=10) == "A-1: yes"


def test_waiting_for_the_result_skips_to_the_timeout(env: WorkflowEnvironment) -> None:
    handle = env.execute(approval, "A-2")
    began = env.clock()
    assert handle.result(timeout=10) == "A-2: expired"
    assert env.clock() - began >= 3600


def test_sleep_fires_what_falls_due_in_order_and_stops_at_the_target(env: WorkflowEnvironment) -> None:
    handle = env.execute(ticks, 3)
    began = env.clock()
    env.sleep(timedelta(hours=2, minutes=30))
    assert env.clock() - began == pytest.approx(2.5 * 3600, abs=5)
    assert handle.status() is workflow.WorkflowStatus.RUNNING
    fired = [ev for ev in env.describe(handle.id).history if ev.type == "timer_fired"]
    assert len(fired) == 2
    env.sleep(3600)
    assert handle.result(timeout=5) == [3600, 7200, 10800]


def test_retry_backoffs_are_skipped_too(env: WorkflowEnvironment) -> None:
    handle = env.execute(retries, 21)
    assert handle.result(timeout=10) == 42  # real seconds: two hour-long backoffs waited, not skipped, fail here
    assert env.clock() - time.time() >= 2 * 1800  # the environment's clock skipped them
    failed = [ev.attrs["retry_in"] for ev in env.describe(handle.id).history if ev.type == "activity_failed"]
    assert len(failed) == 2 and all(r >= 1800 for r in failed)


def test_a_workflow_timeout_is_reached_by_skipping(env: WorkflowEnvironment) -> None:
    handle = env.execute(approval, "A-3", timeout=timedelta(minutes=30))
    with pytest.raises(workflow.WorkflowFailed, match="timed out"):
        handle.result(timeout=10)
    assert handle.status() is workflow.WorkflowStatus.TIMED_OUT


def test_the_clock_starts_where_the_test_says() -> None:
    start = datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
    with WorkflowEnvironment(start_time=start) as env:
        assert abs((env.now() - start).total_seconds()) < 5
        handle = env.execute(ticks, 1)
        assert handle.result(timeout=10) == [3600]
        assert env.describe(handle.id).history[0].timestamp == pytest.approx(start.timestamp(), abs=5)


def test_without_time_skipping_a_long_timer_is_waited_for_in_real_time() -> None:
    with WorkflowEnvironment(time_skipping=False) as env:
        handle = env.execute(ticks, 1)
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.5)
        env.sleep(3600)                      # still available: moves the clock on purpose
        assert handle.result(timeout=5) == [3600]


def test_a_deploy_with_patched_code_keeps_open_runs_on_their_branch() -> None:
    """The upgrade as it happens: runs parked under v1, the process restarts with v2 (which patches in a
    new activity), the old run finishes on the old branch, a new run takes the new one."""
    from beluga.core.definitions import Registry
    from beluga.stores.memory import InMemoryStore

    def v1(ctx: workflow.WorkflowContext, user: str) -> list[str]:
        done = [ctx.execute_activity("testing_env_remind", user)]
        ctx.receive_signal("go").receive()
        return done

    def v2(ctx: workflow.WorkflowContext, user: str) -> list[str]:
        done = []
        if ctx.patched("greet-first"):
            done.append(ctx.execute_activity("testing_env_remind", f"greet {user}"))
        done.append(ctx.execute_activity("testing_env_remind", user))
        ctx.receive_signal("go").receive()
        return done

    store = InMemoryStore()
    old, new = Registry(), Registry()
    old.add_workflow(v1, "greeter")
    new.add_workflow(v2, "greeter")
    for registry in (old, new):
        registry.activities["testing_env_remind"] = workflow.registry.activities["testing_env_remind"]
    with WorkflowEnvironment(store=store, registry=old) as env:
        env.execute("greeter", "old-run", id="g-old")
        deadline = time.monotonic() + 10
        while env.describe("g-old").history[-1].type != "activity_completed" and time.monotonic() < deadline:
            time.sleep(0.01)      # parked on its signal under v1
    with WorkflowEnvironment(store=store, registry=new) as env:   # resumes the open run under v2
        env.execute("greeter", "new-run", id="g-new")
        for wid in ("g-old", "g-new"):
            env.signal(wid, "go")
        assert env.get_handle("g-old").result(timeout=10) == ["reminded old-run"]
        assert env.get_handle("g-new").result(timeout=10) == ["reminded greet new-run", "reminded new-run"]
        markers = [ev.attrs for ev in env.describe("g-new").history if ev.type == "marker_recorded"]
        assert markers == [{"seq": 0, "kind": "patch", "value": {"id": "greet-first", "deprecated": False}}]
        assert not [ev for ev in env.describe("g-old").history if ev.type == "marker_recorded"]
