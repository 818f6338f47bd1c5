"""The names of the fleet's queues beside the default one (`BELUGA_DEFAULT_QUEUE`)."""

from __future__ import annotations

from beluga.settings import Settings


def activity_queue(settings: Settings, name: str) -> str:
    """Each activity has a queue of its own, consumed only by workers that have its code, so a message
    for code no worker has waits there until a worker that has it joins the fleet."""
    return f"{settings.default_queue}.activity.{name}"


def worker_queue(settings: Settings, worker: str) -> str:
    """A queue each worker consumes alone (`worker` is its Celery node name): a run handed on to this
    worker, because the one that took it lacks its code, comes here (see `roster`)."""
    return f"{settings.default_queue}.worker.{worker}"
