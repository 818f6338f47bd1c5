"""Workflows for the clock skew test (tests/celery/test_clock_skew.py), imported by its workers only.
Activities say which worker ran them and what its wall clock read, note each execution per idempotency
key, and note the history Redis's `TIME` as they start (the fleet's clock, to check a retry's delay)."""

from __future__ import annotations

import os
import time

from beluga import workflow
from tests.celery.workflows import _redis

RETRY_DELAY = 2.0


@workflow.activity()
def clock_step(arg: dict) -> dict:
    info = workflow.activity_info()
    seconds, micros = _redis().time()  # the history Redis's clock as the attempt starts
    wall = time.time()                 # and this worker's wall clock
    calls = _redis("BELUGA_TEST_CALLS_URL")
    calls.hincrby("clock:runs", info.idempotency_key, 1)
    calls.hset("clock:started", f"{info.idempotency_key}:{info.attempt}", seconds + micros / 1e6)
    if arg.get("fail_first") and info.attempt == 1:
        raise RuntimeError("the first attempt fails: the next comes after the retry delay")
    time.sleep(arg.get("sleep", 0.0))
    return {"worker": os.environ.get("CLOCK_TEST_WORKER", "?"), "skew": wall - (seconds + micros / 1e6),
            "pid": os.getpid()}


@workflow.defn()
def clock_steps(ctx: workflow.WorkflowContext, arg: dict) -> dict:
    """A few activities (the first of them fails once when `flaky`), a durable sleep, one more activity;
    `ctx.now()` noted at every step."""
    nows = [ctx.now().timestamp()]
    ran = []
    for i in range(arg["steps"]):
        ran.append(ctx.execute_activity(
            clock_step, {"i": i, "sleep": arg.get("sleep", 0.0), "fail_first": arg.get("flaky") and i == 0},
            retry=workflow.RetryPolicy(max_attempts=3, initial_interval=RETRY_DELAY, backoff_coefficient=1.0)))
        nows.append(ctx.now().timestamp())
    ctx.sleep(arg["nap"])
    nows.append(ctx.now().timestamp())
    ran.append(ctx.execute_activity(clock_step, {"i": arg["steps"]}))
    nows.append(ctx.now().timestamp())
    return {"nows": nows, "ran": ran, "slept": nows[-2] - nows[-3]}
