"""The plain Celery baseline as a Celery user runs it: a `Celery()` app with Celery's default settings
(json, early acks, prefetch multiplier 4, no task events, no result backend) serving the same two
tasks as `fleet_workload`'s chain, on a queue of its own. Only bench_fleet.py's second worker imports it:

    CHAIN_BROKER_URL=redis://... celery -A benchmarks.chain_defaults worker -Q chain-defaults -c 2
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, signals

QUEUE = "chain-defaults"
app = Celery("chain_defaults", broker=os.environ.get("CHAIN_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_default_queue = QUEUE
_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(app.conf.broker_url)
    return client


@app.task(name="chain.inc")
def inc(x: int) -> int:
    return x + 1


@app.task(name="chain.inc_done")
def inc_done(x: int, key: str) -> int:
    """The last link: x + 1 added to a Redis counter (see fleet_workload.inc_done)."""
    _redis().incrby(key, x + 1)
    return x + 1


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    _redis().set(f"bench:ready:{getattr(sender, 'hostname', '?')}", os.getpid())
