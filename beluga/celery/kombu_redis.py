"""A change to kombu's Redis transport (seen with kombu 5.7), applied once per process by the Celery app
when its broker is Redis: it keeps a worker alive through a broker outage."""

from __future__ import annotations

import functools
from typing import Any

import redis


def guard_qos() -> None:
    """Work around a kombu bug (Redis transport, seen with kombu 5.7) that stops a worker when the broker
    goes away: a QoS whose channel lost its transport raises a connection error (which Celery and kombu
    handle: the messages stay in the broker's unacked set until their visibility timeout) instead of
    AttributeError (which ends the worker with "Unrecoverable error").

    The bug: after a connection loss Celery calls `connection.collect()`; the Redis transport has no
    `_collect`, so `Connection._do_close_self()` runs, closing the default channel and then, through
    `Transport.close_connection()`, every channel one after the other. The default channel's `close()`
    raises a connection error early (its BRPOP reply can no longer be read), and so does another
    channel's (the pidbox channel deletes its auto-delete fanout queue on the dead connection), which ends
    `close_connection()`'s loop; both errors are swallowed, so the default channel stays open, and
    `collect()` then sets `transport.client = None`. Celery next calls `connection.close()`, which closes
    that channel again: `Channel.close()` -> `_disconnect_pools()` (its pool is now None) -> virtual
    `Channel.close()` -> `QoS.restore_unacked_once()` -> `restore_unacked()` -> `conn_or_acquire()` ->
    `_create_client()` -> `_get_pool()` -> `_connparams()` reads `self.connection.client.hostname` with
    `client` None: AttributeError, which neither `maybe_close_channel()` nor `ignore_errors()` catch
    (they expect connection errors), so it leaves `Consumer.on_connection_error_after_connected()` and
    the worker stops. A task that was running meanwhile and acknowledges its message after the worker
    reconnected meets the same AttributeError in `QoS.ack()` -> `_remove_from_indices()`, raised in the
    event loop (`Message.ack_log_error` only catches connection errors): the worker stops too."""
    from kombu.transport import redis as kombu_redis

    qos = kombu_redis.QoS
    if getattr(qos, "_beluga_guarded", False):
        return

    def guarded(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            transport = getattr(self.channel, "connection", None)
            if transport is None or getattr(transport, "client", None) is None:
                raise redis.ConnectionError("this broker channel was closed with its connection")
            return method(self, *args, **kwargs)

        return call

    for name in ("restore_unacked", "ack", "reject"):
        setattr(qos, name, guarded(getattr(qos, name)))
    qos._beluga_guarded = True
