"""Two changes to kombu's Redis transport (seen with kombu 5.7 and redis-py 8), applied once per process
by the Celery app when its broker is Redis: one keeps a worker alive through a broker outage, one stops
every broker command from building a new redis-py client."""

from __future__ import annotations

import functools
from typing import Any

import redis


def patch() -> None:
    guard_qos()
    reuse_clients()


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


def reuse_clients() -> None:
    """Build each channel's synchronous redis-py client once per connection pool, not once per command.

    kombu's `Channel.conn_or_acquire()`, behind every publish, acknowledgement, unacked-index update and
    event, calls `_create_client()`, which builds a new `redis.Redis`; its constructor copies about 200
    response callbacks (`CaseInsensitiveDict`), some 100 us of CPU on a 2.5 GHz core. py-spy put it at 20%
    of a worker main process's CPU and 8% of a pool process's (benchmarks/bench_fleet.py, part 1).

    A `redis.Redis` over a pool keeps no per-command state (each command borrows a pool connection), so
    one client serves every call on the channel, in any thread. The cached client is dropped when the
    channel's pool changes (kombu replaces it after a connection loss). Asynchronous clients are left as
    kombu makes them: the event loop pins a dedicated connection on each (`client.connection`)."""
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel, "_beluga_reuses_clients", False):
        return
    create = channel._create_client

    @functools.wraps(create)
    def create_once(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return create(self, asynchronous)
        pool = self.pool
        client = self.__dict__.get("_beluga_client")
        if client is None or client.connection_pool is not pool:
            client = self.__dict__["_beluga_client"] = create(self, False)
        return client

    channel._create_client = create_once
    channel._beluga_reuses_clients = True
