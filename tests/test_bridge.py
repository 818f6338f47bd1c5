"""The greenlet bridge the async client runs on (beluga/bridge.py): awaits happen on the loop, errors reach
the code that awaited, context variables follow the caller, and blocking publishes leave the loop's
thread. The client itself is tested against real workers in tests/celery/test_async_client.py."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from beluga.bridge import Bridged, await_only, blocking, in_bridge, pause, run_bridged

CALLER = contextvars.ContextVar("caller", default="nobody")


async def _answer(value: object) -> object:
    await asyncio.sleep(0)
    if isinstance(value, Exception):
        raise value
    return value


def test_awaits_inside_and_errors_reach_the_code_that_awaited() -> None:
    def blocking_code() -> list[object]:
        got = [in_bridge(), await_only(_answer(1))]
        try:
            await_only(_answer(KeyError("k")))
        except KeyError as exc:
            got.append(f"caught {exc}")
        pause(0.001)
        got.append(CALLER.get())
        return got

    async def main() -> list[object]:
        CALLER.set("the request")
        return await run_bridged(blocking_code)

    assert asyncio.run(main()) == [True, 1, "caught 'k'", "the request"]


def test_an_error_not_caught_inside_is_raised_to_the_awaiting_coroutine() -> None:
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_bridged(lambda: await_only(_answer(ValueError("boom")))))


def test_await_only_outside_a_bridge_says_so() -> None:
    coro = _answer(1)
    with pytest.raises(RuntimeError, match="outside"):
        await_only(coro)
    coro.close()
    assert not in_bridge()


def test_blocking_calls_run_on_the_publisher_thread_in_a_bridge_and_inline_elsewhere() -> None:
    def where() -> str:
        return threading.current_thread().name

    assert blocking(where) == threading.current_thread().name
    assert asyncio.run(run_bridged(blocking, where)).startswith("beluga-publish")


def test_bridged_awaits_coroutine_methods_and_closes_with_aclose() -> None:
    class AsyncThing:
        closed = False

        async def get(self, key: str) -> str:
            return f"value of {key}"

        async def aclose(self) -> None:
            AsyncThing.closed = True

    def use(thing: Bridged) -> str:
        value = thing.get("a")
        thing.close()
        return value

    assert asyncio.run(run_bridged(use, Bridged(AsyncThing()))) == "value of a"
    assert AsyncThing.closed
