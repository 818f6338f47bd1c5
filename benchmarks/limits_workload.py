"""The activity bench_limits.py runs: limited to 10 starts a second and 5 running across the fleet; it
notes its own start and end, by the history Redis's clock, in a Redis list."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from beluga import workflow

NOTES = "bench:limits:notes"
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BELUGA_REDIS_URL"])
    return _client


def _now() -> float:
    seconds, micros = _redis().time()
    return seconds + micros / 1e6


@workflow.activity(rate_limit="10/s", max_concurrent=5, rate_key="bench-provider")
def limited_call(spec: dict[str, Any]) -> int:
    started = _now()
    time.sleep(spec["seconds"])
    _redis().rpush(NOTES, f"{started} {_now()}")
    return spec["i"]


@workflow.defn()
def limited_fanout(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> list[int]:
    return ctx.wait_all([ctx.start_activity(limited_call, {"i": i, "seconds": spec["seconds"]})
                         for i in range(spec["calls"])])
