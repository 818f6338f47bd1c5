"""The in-process pool's queues take attempts by priority (beluga/core/priority.py), in order among equals,
and an async rate-limited attempt waits out the rate's start gate on the loop before its coroutine runs."""

from __future__ import annotations

import asyncio
from typing import Any

from beluga.core.definitions import Registry
from beluga.hooks import Hooks
from beluga.inprocess.pool import ActivityPool, _ByPriority


def test_attempts_are_taken_by_priority_then_in_order_and_stop_last() -> None:
    q = _ByPriority()
    q.put(None)
    for tag, priority in [("a", 3), ("b", 5), ("c", 1), ("d", 3), ("e", 1)]:
        q.put((tag,), priority)
    assert [q.get() for _ in range(6)] == [("c",), ("e",), ("a",), ("d",), ("b",), None]


def test_an_async_limited_attempt_waits_for_the_start_gate_on_the_loop() -> None:
    registry = Registry()
    ran: list[str] = []

    async def call(x: Any) -> Any:
        ran.append("call")
        return x

    registry.add_activity(call, "call", rate_limit="5/s")
    answers = [0.01, 0.02, 0.0]

    def gate(name: str, input: Any) -> float:
        ran.append(f"gate {name}")
        return answers.pop(0)

    pool = ActivityPool(1, registry, Hooks, lambda msg: None, lambda value: value, lambda: 0.0, gate)
    assert asyncio.run(pool._gated(registry.activity("call"), 7)) == 7  # noqa: SLF001 - the gate's use
    assert ran == ["gate call", "gate call", "gate call", "call"]
