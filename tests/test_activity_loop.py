"""The event loop that runs `async def` attempts (beluga/activity_loop.py): its room bounds the attempts in
flight, each attempt sees its own `activity_info()`, and a cancelled attempt ends with the reason it was
cancelled for, even when its coroutine swallows the cancellation."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from beluga import workflow
from beluga.activity import ActivityInfo
from beluga.activity_loop import ActivityLoop, AttemptCancelled


def _info(seq: int) -> ActivityInfo:
    return ActivityInfo("wf", "run", "act", seq, 1)


def _done(results: queue.Queue) -> Any:
    return lambda ok, value: results.put((ok, value))


def test_room_bounds_the_attempts_in_flight_and_each_sees_its_own_info() -> None:
    loop, results, release = ActivityLoop(3), queue.Queue(), asyncio.Event()

    async def attempt() -> int:
        seq = workflow.activity_info().seq
        while not release.is_set():
            await asyncio.sleep(0.01)
        return workflow.activity_info().seq * 10 + seq

    for seq in range(3):
        assert loop.acquire(timeout=1)
        loop.start(seq, _info(seq), attempt, _done(results))
    assert not loop.acquire(timeout=0.2)  # full: a fourth waits
    assert sorted(loop.in_flight()) == [0, 1, 2]
    loop._loop.call_soon_threadsafe(release.set)  # type: ignore[union-attr]
    assert sorted(results.get(timeout=5) for _ in range(3)) == [(True, 0), (True, 11), (True, 22)]
    assert loop.acquire(timeout=1) and loop.peak == 3


def test_a_cancelled_attempt_ends_with_its_reason_even_if_it_swallows_the_cancellation() -> None:
    loop, results, cancelled = ActivityLoop(2), queue.Queue(), queue.Queue()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.put("saw it")
            return "returned anyway"
        return "slept"

    loop.acquire()
    loop.start("a", _info(1), stubborn, _done(results))
    while not loop.in_flight():
        pass
    reason = AttemptCancelled("its run closed")
    loop.cancel("a", reason)
    assert results.get(timeout=5) == (False, reason)
    assert cancelled.get(timeout=1) == "saw it"


def test_a_timeout_cancels_the_coroutine_with_its_own_reason() -> None:
    loop, results = ActivityLoop(1), queue.Queue()

    async def slow() -> None:
        await asyncio.sleep(30)

    loop.acquire()
    loop.start("t", _info(1), slow, _done(results), timeout=0.05, timed_out=lambda: TimeoutError("too slow"))
    ok, value = results.get(timeout=5)
    assert not ok and isinstance(value, TimeoutError) and str(value) == "too slow"
    assert loop.acquire(timeout=1)  # its room came back
