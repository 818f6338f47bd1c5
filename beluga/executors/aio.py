"""The executor API, awaitable (`AsyncExecutor`, from `workflow.new_async`): for FastAPI, aiohttp and any
asyncio code, which must not block its event loop on Redis round trips or result waits.

Each method is its blocking `DurableExecutor` counterpart, run by `run`: same arguments, same answers,
same errors (`WorkflowAlreadyStarted`, `WorkflowNotFound`, `ServiceUnavailable` after the retry budget,
`TimeoutError` from `result(timeout)`, ...), because it is the same code. How it runs is the provider's:
the celery client runs it on the event loop itself, every Redis call on redis-py's asyncio client
(beluga/celery/aio.py, beluga/bridge.py); any other executor runs on a worker thread of the loop
(`asyncio.to_thread`: an in-process executor's calls take microseconds, its `result()` holds a thread
while it waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from beluga.core.records import Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.core.retry import Duration, seconds
from beluga.executors.base import DurableExecutor, WorkflowOptions, outcome

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]  # run(fn, *args, **kwargs): fn's result, awaited


class AsyncExecutor:
    """`sync`: the executor whose calls these are; `run`: how each of them runs without blocking the
    loop (default: on a thread, `asyncio.to_thread`); `on_close`: what `aclose` awaits after `sync.close`."""

    def __init__(self, sync: DurableExecutor, run: Runner = asyncio.to_thread,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.sync = sync
        self._run = run
        self._on_close = on_close

    async def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> AsyncWorkflowHandle:
        """Start a run of `workflow` (a function or its registered name), as `DurableExecutor.execute`."""
        handle = await self._run(self.sync.execute, workflow, options)
        return AsyncWorkflowHandle(self, handle.id, handle.run_id)

    async def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> AsyncWorkflowHandle:
        handle = await self._run(self.sync.signal_with_start, workflow, options, signal)
        return AsyncWorkflowHandle(self, handle.id, handle.run_id)

    async def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        await self._run(self.sync.signal, workflow_id, signal, identity=identity)

    async def signal_many(self, signals: Iterable[tuple[str, Signal]], *, identity: str | None = None
                          ) -> list[Exception | None]:
        return await self._run(self.sync.signal_many, list(signals), identity=identity)

    async def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
                     timeout: Duration | None = None, identity: str | None = None) -> Any:
        return await self._run(self.sync.update, workflow_id, name, *args, update_id=update_id, wait=wait,
                               timeout=timeout, identity=identity)

    async def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        return await self._run(self.sync.query, workflow_id, query_type, *args)

    async def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        await self._run(self.sync.cancel, workflow_id, identity=identity)

    async def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        await self._run(self.sync.terminate, workflow_id, reason, identity=identity)

    async def describe(self, workflow_id: str) -> WorkflowState:
        return await self._run(self.sync.describe, workflow_id)  # type: ignore[no-any-return]

    async def summary(self, workflow_id: str) -> WorkflowState:
        return await self._run(self.sync.summary, workflow_id)  # type: ignore[no-any-return]

    async def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """The runs the filter matches, as the executor's store lists them (`WorkflowStore.list`)."""
        return await self._run(self._store().list, filter)  # type: ignore[no-any-return]

    async def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        """How many runs of each status (`WorkflowStore.counts`)."""
        return await self._run(self._store().counts, filter)  # type: ignore[no-any-return]

    async def get_handle(self, workflow_id: str) -> AsyncWorkflowHandle:
        state = await self.summary(workflow_id)
        return AsyncWorkflowHandle(self, workflow_id, state.run_id)

    async def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        return await self._run(self.sync.wait_closed, workflow_id, timeout)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Release the executor's connections (its runs stay where they are)."""
        await self._run(self.sync.close)
        if self._on_close is not None:
            await self._on_close()

    async def __aenter__(self) -> AsyncExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _store(self) -> Any:
        store = getattr(self.sync, "store", None)
        if store is None:
            raise NotImplementedError(f"{type(self.sync).__name__} has no store to list runs from")
        return store


class AsyncWorkflowHandle:
    """`WorkflowHandle`, awaitable: a reference to a run, read through its `AsyncExecutor`."""

    def __init__(self, executor: AsyncExecutor, workflow_id: str, run_id: str) -> None:
        self._executor = executor
        self.id = workflow_id
        self.run_id = run_id

    async def status(self) -> WorkflowStatus:
        return await self._executor.query(self.id, "status")  # type: ignore[no-any-return]

    async def describe(self) -> WorkflowState:
        return await self._executor.describe(self.id)

    async def result(self, timeout: Duration | None = None) -> Any:
        """The run's result (following continue-as-new to the final run); raises `WorkflowFailed`,
        `WorkflowCancelled`, or `TimeoutError` when `timeout` passes first. Holds no thread in the celery
        client: it waits on the run's close announcement with the asyncio client."""
        return outcome(await self._executor.wait_closed(self.id, seconds(timeout)))

    def __repr__(self) -> str:
        return f"AsyncWorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"
