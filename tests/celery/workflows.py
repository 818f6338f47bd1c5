"""Workflows the fleet tests run. Activities record their effects in Redis, keyed by idempotency key,
so tests can check that each took effect once even when workers are killed mid-run."""

from __future__ import annotations

import os
import time

import redis

from beluga import workflow
from beluga.stores.redis import connect

_clients: dict[str, redis.Redis] = {}


def _redis(variable: str = "BELUGA_REDIS_URL") -> redis.Redis:
    """A client of the Redis the variable names (a Redis Cluster's `redis+cluster://` URL too)."""
    url = os.environ[variable]
    if url not in _clients:
        _clients[url] = connect(url)
    return _clients[url]


@workflow.activity()
def fleet_step(arg: dict) -> int:
    """Sleeps a little (so kills land mid-activity), then records its effect idempotently."""
    info = workflow.activity_info()
    time.sleep(arg.get("sleep", 0.0))
    r = _redis()
    r.hincrby("test:runs", info.idempotency_key, 1)          # how often it ran (at least once)
    r.sadd("test:effects", info.idempotency_key)              # the effect, applied once per key
    return arg["i"] + 1


@workflow.defn()
def fleet_steps(ctx: workflow.WorkflowContext, arg: dict) -> int:
    total = 0
    for i in range(arg["steps"]):
        total += ctx.execute_activity(fleet_step, {"i": i, "sleep": arg.get("sleep", 0.0)},
                                      retry=workflow.RetryPolicy(max_attempts=0, initial_interval=0.05,
                                                                 max_interval=0.5))
    return total


@workflow.activity()
def fleet_noted_step(arg: dict) -> int:
    """Notes that its attempt ran, in the Redis named by BELUGA_TEST_CALLS_URL (the broker's, in the
    failover test, which outlives the history Redis): an attempt runs only after the append that
    started it was acknowledged, so the history must keep that append through a failover."""
    info = workflow.activity_info()
    _redis("BELUGA_TEST_CALLS_URL").sadd("test:ran", f"{info.workflow_id}\0{info.seq}\0{info.attempt}")
    time.sleep(arg.get("sleep", 0.0))
    return arg["i"] + 1


@workflow.defn()
def fleet_noted_steps(ctx: workflow.WorkflowContext, arg: dict) -> int:
    total = 0
    for i in range(arg["steps"]):
        total += ctx.execute_activity(fleet_noted_step, {"i": i, "sleep": arg.get("sleep", 0.0)},
                                      retry=workflow.RetryPolicy(max_attempts=0, initial_interval=0.05,
                                                                 max_interval=0.5))
    return total


@workflow.defn()
def fleet_wait_signal(ctx: workflow.WorkflowContext, _: object = None) -> str:
    got = ctx.receive_signal("go").receive()
    return f"got {got}"


@workflow.activity()
def fleet_flaky(key: str) -> int:
    """Fails twice, then succeeds: retries go through Celery's retry."""
    attempt = workflow.activity_info().attempt
    if attempt < 3:
        raise RuntimeError(f"flaky attempt {attempt}")
    return attempt


@workflow.defn()
def fleet_retrying(ctx: workflow.WorkflowContext, _: object = None) -> int:
    return ctx.execute_activity(fleet_flaky, "k", retry=workflow.RetryPolicy(
        max_attempts=5, initial_interval=0.05, backoff_coefficient=2.0, max_interval=0.2))


@workflow.defn()
def fleet_sleeper(ctx: workflow.WorkflowContext, seconds: float) -> float:
    start = ctx.now()
    ctx.sleep(seconds)
    return (ctx.now() - start).total_seconds()


@workflow.defn()
def fleet_calls_missing(ctx: workflow.WorkflowContext, _: object = None) -> str:
    return ctx.execute_activity("fleet_not_everywhere", "x")


@workflow.defn()
def fleet_collect(ctx: workflow.WorkflowContext, _: object = None) -> list:
    """Records `s` signals until one whose payload starts with "stop"; returns the others in order."""
    channel = ctx.receive_signal("s")
    got = []
    while True:
        payload = channel.receive()
        if str(payload).startswith("stop"):
            return got
        got.append(payload)


@workflow.activity()
def fleet_refuse(arg: dict) -> None:
    """Always fails, as a declined payment would."""
    raise ValueError(f"card declined for {arg['order']}")


@workflow.defn()
def fleet_refusing(ctx: workflow.WorkflowContext, arg: dict) -> None:
    """`fleet_refuse` under a policy of `attempts` attempts `interval` seconds apart (jittered x0.5-1.5)."""
    interval = arg.get("interval", 0.05)
    return ctx.execute_activity(fleet_refuse, arg, retry=workflow.RetryPolicy(
        max_attempts=arg.get("attempts", 2), initial_interval=interval, backoff_coefficient=1.0,
        max_interval=3 * interval))


@workflow.activity()
def fleet_logged(arg: dict) -> str:
    """Logs through a logger of its own, as user code does, and makes a span of its own."""
    import logging

    logging.getLogger("tests.shop").warning("charging %s", arg["order"])
    try:
        from opentelemetry import trace
    except ImportError:
        return "charged"
    with trace.get_tracer("tests.shop").start_as_current_span("charge card"):
        return "charged"


@workflow.defn()
def fleet_observed(ctx: workflow.WorkflowContext, arg: dict) -> str:
    """An activity that fails twice, a signal, then a logging activity: what observers should follow."""
    ctx.execute_activity(fleet_flaky, "k", retry=workflow.RetryPolicy(max_attempts=5, initial_interval=0.05,
                                                                      max_interval=0.2))
    ctx.receive_signal("go").receive()
    return ctx.execute_activity(fleet_logged, arg)


@workflow.activity()
def fleet_traced_step(arg: dict) -> int:
    """Notes which Celery task and process ran each attempt (an eager attempt runs inside the task of
    the attempt before it), sleeps on the first attempt of `slow_seq`, then records its effect."""
    from celery import current_task

    info = workflow.activity_info()
    _redis().rpush(f"test:trace:{info.workflow_id}",
                   f"{info.seq}:{info.attempt}:{current_task.request.id}:{os.getpid()}")
    if info.seq == arg.get("slow_seq") and info.attempt == 1:
        time.sleep(arg.get("sleep", 30.0))
    return _counted_effect(info, arg["i"] + 1)


@workflow.defn()
def fleet_traced_steps(ctx: workflow.WorkflowContext, arg: dict) -> int:
    """`steps` traced activities; those listed in `timeout_at` (by index) carry a timeout, those in
    `queue_at` name a queue (their own default one, which the workers consume): never eager."""
    total = 0
    for i in range(arg["steps"]):
        options: dict = {"timeout": 30} if i in arg.get("timeout_at", ()) else {}
        if i in arg.get("queue_at", ()):
            options["queue"] = "beluga.activity.fleet_traced_step"
        total += ctx.execute_activity(fleet_traced_step, {**arg, "i": i},
                                      retry=workflow.RetryPolicy(max_attempts=0, initial_interval=0.05,
                                                                 max_interval=0.5), **options)
    return total


@workflow.activity()
def fleet_woken_step(arg: dict) -> int:
    """Notes which Celery task and process ran it (the attempts a wake batch runs itself share the wake
    task's id), sleeps, then records its effect."""
    from celery import current_task

    info = workflow.activity_info()
    _redis().rpush("test:woken", f"{info.workflow_id}:{info.attempt}:{current_task.request.id}:{os.getpid()}")
    time.sleep(arg.get("sleep", 0.0))
    return _counted_effect(info, arg["i"] + 1)


def _counted_effect(info: workflow.ActivityInfo, result: int) -> int:
    """Record the attempt's effect (how many times each call ran, for the no-duplicate checks)."""
    r = _redis()
    r.hincrby("test:runs", info.idempotency_key, 1)
    r.sadd("test:effects", info.idempotency_key)
    return result


@workflow.defn()
def fleet_wake_then_step(ctx: workflow.WorkflowContext, arg: dict) -> int:
    """Parks on `go`, then runs one activity with the signal's payload."""
    got = ctx.receive_signal("go").receive()
    return ctx.execute_activity(fleet_woken_step, {"i": got, "sleep": arg.get("sleep", 0.0)},
                                retry=workflow.RetryPolicy(max_attempts=0, initial_interval=0.05, max_interval=0.5))


@workflow.activity(max_concurrent=1, rate_key=lambda arg: f"solo-{arg['key']}")
def solo_step(arg: dict) -> int:
    """One at a time per test (its key). The first call's first attempt notes its process and hangs, for
    the test to kill that process; every attempt notes its start."""
    info = workflow.activity_info()
    r = _redis()
    r.rpush(f"test:solo:{arg['key']}", f"{arg['i']} {info.attempt}")
    if arg["i"] == 0 and info.attempt == 1:
        r.set(f"test:solo:{arg['key']}:pid", os.getpid())
        time.sleep(60)
    return arg["i"]


@workflow.defn()
def solo_steps(ctx: workflow.WorkflowContext, arg: dict) -> list[int]:
    return ctx.wait_all([ctx.start_activity(solo_step, {**arg, "i": i}) for i in range(arg["n"])])


@workflow.activity()
def note_scheduled_run(key: str) -> str:
    """Records the run it ran in (workflow id -> run id, a set per workflow id), so a fault test can tell
    a tick started twice (two run ids under one workflow id) from an attempt retried (the same run id)."""
    info = workflow.activity_info()
    _redis().sadd(f"test:scheduled:{key}:{info.workflow_id}", info.run_id)
    _redis().sadd(f"test:scheduled:{key}", info.workflow_id)
    return info.run_id


@workflow.defn()
def wf_scheduled(ctx: workflow.WorkflowContext, key: str) -> str:
    """A schedule's run: notes itself (see note_scheduled_run) and ends."""
    return ctx.execute_activity(note_scheduled_run, key)


# --- async def activities: many attempts in flight in one worker process -----------------------------------
@workflow.activity()
async def fleet_async_probe(arg: dict) -> int:
    """Counts the probes in flight in this process (in the calls Redis, through an asyncio client: an
    I/O-bound coroutine, as async activities are meant for), notes each start (with the count it saw) and
    waits until a `release` flag is set (up to `wait` seconds): by the test, or by the probe that finds
    `barrier` of them in flight at once in this process; then records its effect (idempotently: one per
    idempotency key) and its end."""
    import asyncio

    import redis.asyncio as aioredis

    info = workflow.activity_info()
    key, pid = arg["key"], os.getpid()
    r = aioredis.Redis.from_url(os.environ["BELUGA_TEST_CALLS_URL"])
    try:
        now = await r.incr(f"test:async:{key}:in-flight:{pid}")
        await r.rpush(f"test:async:{key}:starts", f"{info.workflow_id}:{info.attempt}:{pid}:{now}")
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + arg.get("wait", 30.0)
            while loop.time() < until:
                if await r.exists(f"test:async:{key}:release"):
                    break
                if int(await r.get(f"test:async:{key}:in-flight:{pid}") or 0) >= arg.get("barrier", 10**9):
                    await r.set(f"test:async:{key}:release", 1)  # the others may look only after some end
                    break
                await asyncio.sleep(0.05)
            if await r.hsetnx(f"test:async:{key}:effects", info.idempotency_key, f"{info.attempt}:{pid}"):
                await r.rpush(f"test:async:{key}:effect-log", info.idempotency_key)
        finally:
            await r.decr(f"test:async:{key}:in-flight:{pid}")
    finally:
        await r.aclose()
    return arg.get("i", 0)


@workflow.defn()
def fleet_async_one(ctx: workflow.WorkflowContext, arg: dict) -> int:
    return ctx.execute_activity(fleet_async_probe, arg,
                                retry=workflow.RetryPolicy(max_attempts=5, initial_interval=0.1))


@workflow.activity()
async def fleet_async_step(i: int) -> int:
    import asyncio

    await asyncio.sleep(0)
    return i + 1


@workflow.defn()
def fleet_async_steps(ctx: workflow.WorkflowContext, steps: int) -> int:
    """`steps` async activities one after the other: each may start eagerly on the loop after the last."""
    total = 0
    for i in range(steps):
        total += ctx.execute_activity(fleet_async_step, i)
    return total


@workflow.activity(rate_limit="50/s", rate_key=lambda arg: f"agate-{arg['key']}")
async def async_gated(arg: dict) -> bool:
    """A rate-limited async activity: whether its start went through the rate's start gate, which notes
    each attempt it lets start in its limit's `starts` set (start_gate.lua) right before the start."""
    info = workflow.activity_info()
    holder = f"{info.workflow_id}\x1f{info.run_id}\x1f{info.seq}\x1f{info.attempt}"
    r = _redis()
    return any(r.zscore(k, holder) is not None for k in r.scan_iter(match=f"*:agate-{arg['key']}:starts"))


@workflow.defn()
def wf_async_gated(ctx: workflow.WorkflowContext, arg: dict) -> list[bool]:
    return ctx.wait_all([ctx.start_activity(async_gated, {**arg, "i": i}) for i in range(3)])
