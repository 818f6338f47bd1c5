"""Celery task events and log lines for an activity attempt that runs eagerly, inside the task before it.

Such an attempt has no message and so no Celery task of its own, yet Flower (and anything else that
follows the workers' events) should show it as it shows every other attempt: as a `beluga.activity`
task with the attempt's arguments, received, started and then succeeded, retried or failed, and the
worker's log should carry the lines Celery writes when a task ends (`celery.app.trace`). The worker
sends those events for a task from its main process; an eager attempt runs in a pool process, which
sends them itself over a producer from the app's pool, as a task's own custom events do
(`Task.send_event`). Events are best effort: one that cannot be sent never fails the attempt."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, current_task
from celery.utils import uuid
from celery.utils.saferepr import saferepr

from beluga.celery.outages import Quiet
from beluga.logs import get_logger

log = get_logger(__name__)
_events = Quiet(log, "sending task events for eager attempts")
trace_log = logging.getLogger("celery.app.trace")  # where Celery logs a task's end
_local = threading.local()  # a batch's one dispatcher (see `batched`)
BATCH_EVENTS = 100  # a batch's events go out in messages of at most this many, as a worker's own do


@contextmanager
def batched(app: Celery) -> Iterator[None]:
    """The eager attempts of a wake batch send their events through one dispatcher that buffers them
    and publishes them together (`task.multi`, as a worker buffers its own task events), at the latest
    when the block ends: three messages per attempt cost more than the attempt."""
    _local.batch = {"app": app, "dispatcher": None}
    try:
        yield
    finally:
        batch, _local.batch = _local.batch, None
        dispatcher = batch["dispatcher"]
        if dispatcher is not None:
            try:
                dispatcher.flush()
                _events.recovered()
            except Exception as exc:
                _events.error("could not send the events of a wake batch's eager attempts", exc=exc)
            finally:
                dispatcher.close()
                dispatcher.connection.release()


class EagerTaskEvents:
    """The events of one eager attempt, under a task id of its own (`task_id`), sent only when the
    worker sends task events at all (`worker_send_task_events`, Beluga's default, or `-E`)."""

    def __init__(self, app: Celery, activity: str, args_repr: str, kwargs_repr: str) -> None:
        self.app = app
        self.name = f"activity:{activity}"  # as the activity's tasks show (`shadow`)
        self.task_id = uuid()
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
                   ("task-started", {}))

    def succeeded(self, result: Any) -> None:
        runtime, shown = time.perf_counter() - self.began, saferepr(result, maxlen=1024)
        trace_log.info("Task %s[%s] succeeded in %ss: %s", self.name, self.task_id, runtime, shown)
        self._send(("task-succeeded", {"result": shown, "runtime": runtime}))

    def failed(self, failure: dict[str, Any], retried: bool) -> None:
        exception = f"{failure.get('type', 'Exception')}({saferepr(failure.get('message', ''), maxlen=1024)})"
        if retried:
            trace_log.info("Task %s[%s] retry: %s", self.name, self.task_id, exception)
        else:
            trace_log.info("Task %s[%s] raised expected: %s", self.name, self.task_id, exception)
        self._send(("task-retried" if retried else "task-failed",
                    {"exception": exception, "traceback": str(failure.get("traceback", ""))}))

    def _send(self, *events: tuple[str, dict[str, Any]]) -> None:
        if not self.enabled:
            return
        batch = getattr(_local, "batch", None)
        try:
            if batch is not None and batch["app"] is self.app:
                if batch["dispatcher"] is None:
                    batch["dispatcher"] = self.app.events.Dispatcher(
                        self.app.connection_for_write(), hostname=self.hostname, buffer_group=["task"],
                        buffer_limit=BATCH_EVENTS)
                for kind, fields in events:
                    batch["dispatcher"].send(kind, uuid=self.task_id, **fields)
                return
            with self.app.events.default_dispatcher(hostname=self.hostname) as dispatcher:
                for kind, fields in events:
                    dispatcher.send(kind, uuid=self.task_id, **fields)
            _events.recovered()
        except Exception as exc:
            _events.error("could not send the events of eager attempt %s", self.task_id, exc=exc)
