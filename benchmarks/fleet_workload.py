"""What the benchmark worker runs (imported through BELUGA_IMPORTS=benchmarks.fleet_workload).

Beluga workflows and activities, and the plain Celery tasks of the baseline `chain`. The plain tasks are
registered on the very app `celery -A beluga worker` serves (`beluga.celery.app.get_app()`), so they run
with Beluga's settings: msgpack codec, task_acks_late, task_reject_on_worker_lost, prefetch multiplier 1,
task_ignore_result (no result backend), task events on, queue "beluga".

Not a test module and not part of the library: only bench_fleet.py's worker imports it.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import signals

from beluga import workflow
from beluga.celery.app import get_app

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    """One client per process (pool processes are forked after import: connect lazily)."""
    url = os.environ["BELUGA_REDIS_URL"]
    key = f"{os.getpid()}:{url}"
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(url)
    return client


# --- Beluga -----------------------------------------------------------------------------------------
@workflow.activity(name="bench_inc")
def bench_inc(x: int) -> int:
    return x + 1


@workflow.defn(name="bench_steps")
def bench_steps(ctx: workflow.WorkflowContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = ctx.execute_activity(bench_inc, x)
    return x


@workflow.activity(name="bench_stamp")
def bench_stamp(i: int) -> int:
    """Notes when it actually starts running, for the signal-latency part."""
    now = time.time()
    _redis().rpush(f"bench:stamps:{workflow.activity_info().workflow_id}", repr(now))
    return i


@workflow.defn(name="bench_signal_loop")
def bench_signal_loop(ctx: workflow.WorkflowContext, n: int) -> int:
    for i in range(n):
        ctx.receive_signal("go").receive()
        ctx.execute_activity(bench_stamp, i)
    return n


@workflow.defn(name="bench_parked")
def bench_parked(ctx: workflow.WorkflowContext, _: Any = None) -> Any:
    return ctx.receive_signal("go").receive()


@workflow.defn(name="bench_parked_step")
def bench_parked_step(ctx: workflow.WorkflowContext, _: Any = None) -> Any:
    """A parked run whose signal leads to one activity (part 5's second wake)."""
    return ctx.execute_activity(bench_inc, ctx.receive_signal("go").receive())


@workflow.activity(name="bench_tick")
def bench_tick(key: str) -> None:
    """A scheduled run's side effect (bench_schedules.py): notes its run id under its workflow id, and when
    it ran, so that a tick started twice shows as two run ids and lateness is read from the run itself."""
    info = workflow.activity_info()
    r = _redis()
    r.sadd(f"bench:tick:{key}:{info.workflow_id}", info.run_id)
    r.hsetnx(f"bench:tick:{key}:at", info.workflow_id, repr(time.time()))


@workflow.defn(name="bench_scheduled")
def bench_scheduled(ctx: workflow.WorkflowContext, key: str) -> None:
    ctx.execute_activity(bench_tick, key)


# --- the plain Celery baseline ----------------------------------------------------------------------
app = get_app()


@app.task(name="bench.inc")
def inc(x: int) -> int:
    return x + 1


@app.task(name="bench.inc_done")
def inc_done(x: int, key: str) -> int:
    """The chain's last link: the same x + 1, then it reports the result by adding it to a Redis counter
    (no result backend): W chains of S steps are all done, and right, when the counter reaches W * S."""
    _redis().incrby(key, x + 1)
    return x + 1


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    """Tells the benchmark that the worker consumes (so it can run at log level WARNING)."""
    hostname = getattr(sender, "hostname", "?")
    _redis().set(f"bench:ready:{hostname}", os.getpid())


@workflow.defn(name="bench_counter")
def bench_counter(ctx: workflow.WorkflowContext) -> int:
    """bench_updates.py: a count bumped by the update `bump` or by the signal `bump` (read back with the
    query `n`); a signal `bump` of None ends it."""
    state = {"n": 0}

    def bump(k: int) -> int:
        state["n"] += k
        return state["n"]

    ctx.set_update_handler("bump", bump)
    ctx.set_query_handler("n", lambda: state["n"])
    channel = ctx.receive_signal("bump")
    while True:
        k = channel.receive()
        if k is None:
            return state["n"]
        state["n"] += k


# --- bench_async.py: an I/O-bound activity as a coroutine, and as a plain function (the baseline) ---------
def _in_flight(delta: int) -> None:
    """The attempts in flight in this process, its peak kept in Redis (two commands per attempt)."""
    r = _redis()
    now = r.incrby(f"bench:async:now:{os.getpid()}", delta)
    if delta > 0:
        r.eval("if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then "
               "redis.call('SET', KEYS[1], ARGV[1]) end", 1, "bench:async:peak", now)


@workflow.activity(name="bench_async_nap")
async def bench_async_nap(seconds: float) -> float:
    import asyncio

    _in_flight(1)
    try:
        await asyncio.sleep(seconds)
    finally:
        _in_flight(-1)
    return seconds


@workflow.activity(name="bench_sync_nap")
def bench_sync_nap(seconds: float) -> float:
    _in_flight(1)
    try:
        time.sleep(seconds)
    finally:
        _in_flight(-1)
    return seconds


@workflow.defn(name="bench_nap")
def bench_nap(ctx: workflow.WorkflowContext, arg: dict) -> float:
    return ctx.execute_activity(arg["activity"], arg["seconds"])
