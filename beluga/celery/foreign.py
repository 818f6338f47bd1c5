"""Messages of another fleet on this broker's queues.

Two deployments that share a broker (one Redis database or RabbitMQ virtual host) but not their history
Redis or key prefix consume each other's queues, and a worker took the other deployment's messages
for stale ones: the run they belonged to waited for its lease, or for ever when such a worker kept
winning the message. Every message a fleet sends carries its fleet's id (`Fleet.identity`); a worker
that takes one of another fleet says so loudly and hands it back to its queue, a little later, for a
worker of its own fleet. A message without the header (sent by an older client) is taken as ever."""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import Ignore

from beluga.logs import get_logger

FLEET_HEADER = "beluga_fleet"  # the sending fleet's id (see Fleet.identity)
HOPS_HEADER = "beluga_hops"    # how often workers of other fleets handed the message back
MAX_HOPS = 30                  # then it is dropped: its own fleet sends it again (lease, sweep, resend)
HAND_BACK_DELAY = 1.0          # seconds before a handed-back message may be taken again

log = get_logger("beluga.tasks")


class _Often:
    """Says each other fleet's first message at once, then at most one line per `interval` seconds, with
    how many were handed back since: loud, without a line per message."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def due(self, fleet: str) -> int | None:
        """None to keep quiet, else how many messages were held back since the last line."""
        now = time.monotonic()
        last, held = self._last.get(fleet, (-1e9, 0))
        if now - last < self.interval:
            self._last[fleet] = (last, held + 1)
            return None
        self._last[fleet] = (now, 0)
        return held


_said = _Often()
_stale = _Often()
_recheck = _Often(1.0)  # reads of this process's own id, at most one a second per other id


def header(request: Any, name: str) -> Any:
    """A custom header of a task's message (Celery puts them on the request, or in its `headers`)."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def refuse_foreign(task: Any, fleet: Any) -> None:
    """Raise Celery's `Ignore` (the message is acknowledged, no state recorded) when the task's message
    was sent by another fleet than `fleet` (a `Fleet`), after handing it back to its queue (up to
    MAX_HOPS times). An id that differs is checked first, as it may be stale on either side (a store
    wiped and given a new id while a process lived): this process reads its own again, then looks for
    what the message is about in its store (`Fleet.knows`): found, the message is taken as ever."""
    theirs = header(task.request, FLEET_HEADER)
    if theirs is None or theirs == fleet.identity():
        return
    if _recheck.due(str(theirs)) is not None and theirs == fleet.identity(refresh=True):
        return
    if fleet.knows(task.name, tuple(task.request.args or ())):
        if _stale.due(str(theirs)) is not None:
            log.info("a %s message names fleet %s, not this one (%s), but this fleet's store holds what it "
                     "is about: taken (its sender's fleet id is stale)", task.name, theirs, fleet.identity())
        return
    mine = fleet.identity()
    hops = _int(header(task.request, HOPS_HEADER))
    queue = (task.request.delivery_info or {}).get("routing_key")
    held = _said.due(str(theirs))
    if held is not None:
        log.error("took a %s message of another fleet (%s; this worker's fleet is %s) from queue %r: two "
                  "deployments with different history stores (BELUGA_REDIS_URL) or key prefixes "
                  "(BELUGA_KEY_PREFIX) consume the same queues of one broker, and each takes the other's "
                  "messages. Give each deployment its own broker (a Redis database or RabbitMQ virtual host of "
                  "its own) or its own queues (BELUGA_DEFAULT_QUEUE). %s%s", task.name, theirs, mine, queue,
                  "Handed it back to its queue." if hops < MAX_HOPS else
                  f"Dropped it after {MAX_HOPS} hand-backs (its fleet sends it again).",
                  f" ({held} more since)" if held else "")
    if hops < MAX_HOPS:
        headers = {k: v for k, v in (getattr(task.request, "headers", None) or {}).items()}
        headers.update({FLEET_HEADER: theirs, HOPS_HEADER: hops + 1})
        task.signature_from_request(queue=queue, headers=headers).apply_async(countdown=HAND_BACK_DELAY)
    raise Ignore()


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
