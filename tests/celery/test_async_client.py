"""The async client (`workflow.new_async("celery")`) against the session's real workers: the contract's
calls awaited, with the blocking client's answers and errors, every Redis call on redis-py's asyncio
client and the event loop never held (a result wait and a signal share one loop). Each test runs its own
loop (`asyncio.run`): an executor belongs to the loop it is used in."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio
from celery.signals import before_task_publish

from beluga import workflow
from beluga.bridge import Bridged
from beluga.celery.foreign import FLEET_HEADER
from tests.executors import workflows as W  # noqa: F401 - the workflows the workers run, by name here
from tests.fleet import free_port


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run(fleet: Any, body: Callable[[workflow.AsyncExecutor], Awaitable[Any]], **extra: Any) -> Any:
    """`body(executor)` on a fresh event loop, with an async client of `fleet` made in that loop."""
    async def main() -> Any:
        async with workflow.new_async("celery", workflow.Config(
                extra={"broker_url": fleet.url, "redis_url": fleet.redis_url, **extra})) as ex:
            return await body(ex)

    return asyncio.run(main())


def test_every_redis_call_is_made_with_the_asyncio_client(fleet) -> None:
    async def body(ex: workflow.AsyncExecutor) -> None:
        store = ex.sync.store  # type: ignore[attr-defined]
        assert isinstance(store.redis, Bridged) and isinstance(store.redis._target, redis.asyncio.Redis)
        handle = await ex.execute("wf_echo", workflow.WorkflowOptions(id=_id("aecho"), input={"n": 1}))
        assert await handle.result(timeout=30) == {"n": 1}
        assert ex.sync._waits.redis._target.__class__ is redis.asyncio.Redis  # type: ignore[attr-defined]

    run(fleet, body)


def test_a_result_wait_does_not_hold_the_loop_the_signal_comes_from(fleet) -> None:
    """`result()` waits while the same loop sends the signal it waits for: a wait that blocked the loop
    would time out before the signal was ever sent."""
    async def body(ex: workflow.AsyncExecutor) -> list[Any]:
        wid = _id("asig")
        handle = await ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go"))
        waiter = asyncio.create_task(handle.result(timeout=30))
        await asyncio.sleep(0.05)  # the waiter is subscribed and waiting
        assert not waiter.done()
        await ex.signal(wid, workflow.Signal("go", "through one loop"))
        assert await waiter == "through one loop"
        assert await handle.status() is workflow.WorkflowStatus.COMPLETED
        state = await handle.describe()
        return [e.attrs["payload"] for e in state.history if e.type == "signal_received"]

    assert run(fleet, body) == ["through one loop"]


def test_queries_builtin_and_by_a_worker(fleet) -> None:
    async def body(ex: workflow.AsyncExecutor) -> None:
        wid = _id("aquery")
        handle = await ex.execute("wf_progress", workflow.WorkflowOptions(id=wid, input=5))
        for _ in range(200):
            if (await ex.query(wid, "progress"))["step"] == "waiting":
                break
            await asyncio.sleep(0.05)
        assert await ex.query(wid, "add", 1, 2) == 8
        assert await ex.query(wid, "status") is workflow.WorkflowStatus.RUNNING
        with pytest.raises(workflow.QueryNotFound):
            await ex.query(wid, "no_such_query")
        with pytest.raises(workflow.RemoteError, match="ZeroDivisionError"):
            await ex.query(wid, "broken")
        await ex.signal(wid, workflow.Signal("go", "done"))
        assert await handle.result(timeout=30) == "done"
        assert await ex.query(wid, "result") == "done"

    run(fleet, body)


def test_the_blocking_clients_errors(fleet) -> None:
    async def body(ex: workflow.AsyncExecutor) -> None:
        wid = _id("aerr")
        handle = await ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go", request_id="r-1"))
        again = await ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go", request_id="r-1"))
        assert again.run_id == handle.run_id  # a retry of the same request: the same run
        with pytest.raises(workflow.WorkflowAlreadyStarted):
            await ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=wid, input="go"))
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.3)
        missing = _id("amissing")
        for call in (ex.describe(missing), ex.summary(missing), ex.signal(missing, workflow.Signal("go")),
                     ex.cancel(missing), ex.get_handle(missing)):
            with pytest.raises(workflow.WorkflowNotFound):
                await call
        await ex.signal(wid, workflow.Signal("go", "first"))
        assert await handle.result(timeout=30) == "first"
        with pytest.raises(workflow.WorkflowNotRunning):
            await ex.signal(wid, workflow.Signal("go", "late"))

    run(fleet, body)


def test_cancel_and_terminate(fleet) -> None:
    async def body(ex: workflow.AsyncExecutor) -> None:
        cancelled = await ex.execute("wf_cancellable", workflow.WorkflowOptions(id=_id("acancel"), input="k"))
        ended = await ex.execute("wf_wait_signal", workflow.WorkflowOptions(id=_id("aterm"), input="go"))
        await ex.cancel(cancelled.id, identity="tests")
        await ex.terminate(ended.id, "not needed", identity="tests")
        with pytest.raises(workflow.WorkflowCancelled):
            await cancelled.result(timeout=30)
        with pytest.raises(workflow.WorkflowCancelled):
            await ended.result(timeout=30)
        history = (await cancelled.describe()).history
        assert [e.type for e in history if e.type == "workflow_cancel_requested"] == ["workflow_cancel_requested"]

    run(fleet, body)


def test_many_runs_at_once_on_one_loop_and_listed(fleet) -> None:
    prefix = _id("amany")

    async def body(ex: workflow.AsyncExecutor) -> tuple[list[Any], set[str], int]:
        handles = await asyncio.gather(*(ex.execute("wf_echo", workflow.WorkflowOptions(id=f"{prefix}-{i}", input=i))
                                         for i in range(20)))
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
        listed = await ex.list(workflow.WorkflowFilter(id_prefix=prefix, limit=100))
        counts = await ex.counts(workflow.WorkflowFilter(id_prefix=prefix))
        return results, {s.workflow_id for s in listed}, counts["completed"]

    results, listed, completed = run(fleet, body)
    assert results == list(range(20))
    assert listed == {f"{prefix}-{i}" for i in range(20)} and completed == 20


def test_tasks_carry_the_fleet_id_and_are_published_off_the_loop(fleet) -> None:
    """Every message the async client sends is stamped as the blocking client's are (`Sender.stamp`), and
    kombu publishes it on the publisher thread, not the loop's."""
    sent: list[tuple[str, Any, str]] = []

    def note(sender: Any = None, headers: Any = None, **_: Any) -> None:
        sent.append((sender, (headers or {}).get(FLEET_HEADER), threading.current_thread().name))

    async def body(ex: workflow.AsyncExecutor) -> str:
        wid = _id("astamp")
        handle = await ex.execute("wf_progress", workflow.WorkflowOptions(id=wid, input=0))
        for _ in range(200):
            if (await ex.query(wid, "progress"))["step"] == "waiting":
                break
            await asyncio.sleep(0.05)
        await ex.signal(wid, workflow.Signal("go", "x"))
        assert await handle.result(timeout=30) == "x"
        return await asyncio.to_thread(ex.sync.fleet.identity)  # type: ignore[attr-defined]

    before_task_publish.connect(note, weak=False)
    try:
        identity = run(fleet, body)
    finally:
        before_task_publish.disconnect(note)
    names = {name for name, _, _ in sent}
    assert {"beluga.query"} <= names and names & {"beluga.wake", "beluga.coordinate"}
    assert {(header, thread.startswith("beluga-publish")) for _, header, thread in sent} == {(identity, True)}


def test_redis_unreachable_is_service_unavailable_saying_nothing_took_effect() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"

    async def main() -> None:
        ex = workflow.new_async("celery", workflow.Config(extra={"broker_url": dead, "redis_url": dead,
                                                                 "client_retry_seconds": 0.5}))
        with pytest.raises(workflow.ServiceUnavailable) as err:
            await ex.execute("wf_echo", workflow.WorkflowOptions(id="never", input=1, request_id="r-x"))
        assert err.value.may_have_taken_effect is False and err.value.request_id == "r-x"
        with pytest.raises(workflow.ServiceUnavailable):
            await ex.describe("never")
        await ex.aclose()

    asyncio.run(main())


def test_other_executors_run_on_a_thread(tmp_path) -> None:
    """The in-process executor's calls, awaitable: each runs on a thread of the loop."""
    from beluga.stores import SQLiteStore

    async def main() -> Any:
        async with workflow.new_async("default", workflow.Config(store=SQLiteStore(str(tmp_path / "a.db")))) as ex:
            handle = await ex.execute(W.wf_wait_signal, workflow.WorkflowOptions(id="local-1", input="go"))
            await ex.signal("local-1", workflow.Signal("go", "local"))
            return await handle.result(timeout=30), [s.workflow_id for s in await ex.list()]

    assert asyncio.run(main()) == ("local", ["local-1"])
