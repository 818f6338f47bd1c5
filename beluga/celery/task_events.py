"""Celery task events and log lines for an activity attempt that runs eagerly, inside the task before it.

Such an attempt has no message and so no Celery task of its own, yet Flower (and anything else that
follows the workers' events) should show it as it shows every other attempt: as a `beluga.activity`
task with the attempt's arguments, received, started and then succeeded, retried or failed, and the
worker's log should carry the lines Celery writes when a task ends (`celery.app.trace`). The worker
sends those events for a task from its main process; an eager attempt runs in a pool process, which
sends them itself, over one connection of its own: a task's eager attempts' events go out as one message
when the last ends (or, for a long one, its start within a few seconds, see `flush`). Events are best
effort: one that cannot be sent never fails the attempt."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, current_task
from celery.utils.saferepr import saferepr

from beluga.celery.outages import Quiet
from beluga.celery.outcome import shown_exception
from beluga.logs import get_logger

log = get_logger(__name__)
_events = Quiet(log, "sending task events for eager attempts")
trace_log = logging.getLogger("celery.app.trace")  # where Celery logs a task's end


class TaskEventOutbox:
    """A process's task events for its eager attempts: buffered in one dispatcher (one connection),
    published as one `task.multi` message per flush (Flower and Celery's event receivers take lists of
    events). One per Runtime; a forked pool process makes a dispatcher (and a connection) of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dispatcher: Any = None  # made on first use, in the process that uses it
        self._pid = os.getpid()
        self._local = threading.local()  # whether this thread runs a wake batch's attempts (see `batched`)

    @contextmanager
    def batched(self) -> Iterator[None]:
        """The eager attempts of a task (or of a wake batch) hold their events until the block ends, then
        publish them together, as a worker buffers its own task events: a message per attempt costs more
        than the attempt."""
        self._local.batched = True
        try:
            yield
        finally:
            self._local.batched = False
            self.flush()

    def send(self, app: Celery, hostname: str, task_id: str, *events: tuple[str, dict[str, Any]],
             now: bool = True) -> None:
        """Buffer `events`; publish them at once when `now` (unless a wake batch holds them)."""
        self._hold(app, hostname, task_id, events)
        if now and not getattr(self._local, "batched", False):
            self.flush()

    def _hold(self, app: Celery, hostname: str, task_id: str, events: tuple[tuple[str, dict[str, Any]], ...]
              ) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's dispatcher and connection are not ours
                self._dispatcher, self._pid = None, os.getpid()
            if self._dispatcher is None:
                self._dispatcher = app.events.Dispatcher(app.connection_for_write(), hostname=hostname,
                                                         enabled=True, buffer_while_offline=False,
                                                         buffer_group=["task"], buffer_limit=1000)
            try:
                for kind, fields in events:
                    self._dispatcher.send(kind, uuid=task_id, **fields)  # past buffer_limit, it publishes
            except Exception as exc:
                self._drop(exc)

    def flush(self) -> None:
        """Publish the events held by this process (the start of an eager attempt still running): called
        at each attempt's end and by the thread that renews the eager attempts' deadlines."""
        with self._lock:
            if self._dispatcher is None or self._pid != os.getpid():
                return
            try:
                self._dispatcher.flush()
                _events.recovered()
            except Exception as exc:
                self._drop(exc)

    def _drop(self, exc: Exception) -> None:
        """The dispatcher failed to publish (the broker away): the events it held are dropped with it, the
        next ones get a new one. Called holding `_lock`."""
        d, self._dispatcher = self._dispatcher, None
        try:
            d.close()
            d.connection.release()
        except Exception:  # noqa: BLE001 - it is being dropped anyway
            pass
        _events.error("could not send the task events of eager attempts", exc=exc)


class EagerTaskEvents:
    """The events of one eager attempt, under the task id of its activity call (`task_id`: its later
    attempts, sent through the broker, take it too), sent only when the
    worker sends task events at all (`worker_send_task_events`, Beluga's default, or `-E`)."""

    def __init__(self, outbox: TaskEventOutbox, app: Celery, activity: str, task_id: str, args_repr: str,
                 kwargs_repr: str) -> None:
        self.outbox = outbox
        self.app = app
        self.name = f"activity:{activity}"  # as the activity's tasks show (`shadow`)
        self.task_id = task_id
        parent = getattr(current_task, "request", None)
        self.hostname = getattr(parent, "hostname", None)
        self.parent_id = getattr(parent, "id", None)
        self.root_id = getattr(parent, "root_id", None) or self.parent_id
        self.enabled = bool(app.conf.worker_send_task_events) and self.hostname is not None
        self.args_repr, self.kwargs_repr = args_repr, kwargs_repr
        self.began = time.perf_counter()

    def received_and_started(self) -> None:
        self._send(("task-received", {"name": self.name, "args": self.args_repr,
                                      "kwargs": self.kwargs_repr, "root_id": self.root_id,
                                      "parent_id": self.parent_id, "retries": 0, "eta": None, "expires": None}),
                   ("task-started", {}), now=False)  # sent with its end, or by `flush` while it runs

    def succeeded(self, result: Any) -> None:
        runtime, shown = time.perf_counter() - self.began, saferepr(result, maxlen=1024)
        trace_log.info("Task %s[%s] succeeded in %ss: %s", self.name, self.task_id, runtime, shown)
        self._send(("task-succeeded", {"result": shown, "runtime": runtime}))

    def failed(self, failure: dict[str, Any], retried: bool) -> None:
        exception = shown_exception(failure)
        if retried:
            trace_log.info("Task %s[%s] retry: %s", self.name, self.task_id, exception)
        else:
            trace_log.info("Task %s[%s] raised expected: %s", self.name, self.task_id, exception)
        self._send(("task-retried" if retried else "task-failed",
                    {"exception": exception, "traceback": str(failure.get("traceback", ""))}))

    def _send(self, *events: tuple[str, dict[str, Any]], now: bool = True) -> None:
        if not self.enabled:
            return
        assert self.hostname is not None
        self.outbox.send(self.app, self.hostname, self.task_id, *events, now=now)
