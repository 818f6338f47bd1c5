"""An event loop on a thread of its own that runs `async def` activity attempts, many at once: what every
executor that runs activities in its own processes shares (the in-process pool, a fleet worker's process).

A thread (or a pool process) per attempt would cap an I/O-bound activity at the pool's size; one loop
runs up to `limit` attempts in flight, each an asyncio task. An attempt ends in one of three ways: its
coroutine returns or raises, or it is cancelled (`cancel`: the attempt timed out, or its result can no
longer count: its run closed, it was reclaimed) and then ends with the reason it was cancelled for, even
should the coroutine swallow the cancellation. `done` is called on the loop's thread and must not block.

A forked process (Celery's prefork pool) inherits the object but not the thread: the first use in a new
process starts a loop of its own, with all its room free."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any

from beluga.activity import ActivityInfo, run_async_with_info

Done = Callable[[bool, Any], None]  # (ok, the result or the exception)


class AttemptCancelled(Exception):
    """Why an async attempt's coroutine was cancelled when its result could no longer count: its run
    closed (cancelled, terminated, timed out, or ended without it), or its attempt was given up."""


def run_closed(workflow_id: str, how: str) -> AttemptCancelled:
    return AttemptCancelled(f"workflow {workflow_id} {how}: its attempt in flight was cancelled")


class ActivityLoop:
    """The event loop of one process's `async def` attempts, at most `limit` in flight (see the module)."""

    def __init__(self, limit: int, name: str = "beluga-async") -> None:
        self.limit = limit
        self.name = name
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = threading.Semaphore(limit)
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}   # the loop's thread alone changes these two
        self._reasons: dict[Hashable, BaseException] = {}
        self.peak = 0  # the most attempts in flight at once so far (benchmarks, tests)

    # --- room -------------------------------------------------------------------------------------------
    def acquire(self, timeout: float | None = None) -> bool:
        """Take room for one attempt, waiting up to `timeout` (None: as long as it takes); False if none
        came. The attempt's end gives it back."""
        self._own_process()
        return self._room.acquire(timeout=timeout)

    def release(self) -> None:
        """Give back room taken for an attempt that will not start after all."""
        self._room.release()

    def in_flight(self) -> list[Hashable]:
        """The keys of the attempts running now (a snapshot)."""
        return list(self._tasks.copy()) if self._pid == os.getpid() else []

    # --- attempts ---------------------------------------------------------------------------------------
    def start(self, key: Hashable, info: ActivityInfo, call: Callable[[], Any], done: Done,
              timeout: float | None = None, timed_out: Callable[[], BaseException] | None = None) -> None:
        """Run `call()` (which returns the activity's coroutine) as attempt `key`, in room the caller took
        with `acquire`, in a copy of the caller's context (its current span, its log fields). `timeout`:
        seconds from now after which it is cancelled with `timed_out()`."""
        loop = self._own_process()
        loop.call_soon_threadsafe(self._begin, contextvars.copy_context(), key, info, call, done, timeout, timed_out)

    def cancel(self, key: Hashable, reason: BaseException) -> None:
        """Cancel attempt `key` if it is still running: it ends failed with `reason` (from any thread)."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid() and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_now, key, reason)

    def _own_process(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                if self._pid is not None:  # inherited across a fork: none of it runs here
                    self._room = threading.Semaphore(self.limit)
                    self._tasks, self._reasons = {}, {}
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self.name, daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def _begin(self, context: contextvars.Context, key: Hashable, info: ActivityInfo, call: Callable[[], Any],
               done: Done, timeout: float | None, timed_out: Callable[[], BaseException] | None) -> None:
        loop = self._loop
        assert loop is not None
        self._tasks[key] = context.run(loop.create_task, self._run(key, info, call, done))  # the task copies it
        self.peak = max(self.peak, len(self._tasks))
        if timeout is not None:
            reason = timed_out or (lambda: TimeoutError(f"timed out after {timeout:g}s"))
            loop.call_later(max(timeout, 0.0), lambda: self._cancel_now(key, reason()))

    def _cancel_now(self, key: Hashable, reason: BaseException) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.done() and key not in self._reasons:
            self._reasons[key] = reason
            task.cancel()

    async def _run(self, key: Hashable, info: ActivityInfo, call: Callable[[], Any], done: Done) -> None:
        ok, value = True, None
        try:
            value = await run_async_with_info(info, call)
        except BaseException as exc:  # noqa: BLE001 - an attempt's failure, cancellation included
            ok, value = False, exc
        finally:
            self._tasks.pop(key, None)
            reason = self._reasons.pop(key, None)
            self._room.release()
        if reason is not None:  # cancelled: it ends as what it was cancelled for, whatever it did then
            ok, value = False, reason
        done(ok, value)
