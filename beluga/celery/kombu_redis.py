"""Changes to kombu's Redis transport (seen with kombu 5.7), applied once per process by the Celery app
when its broker is Redis: they keep a worker alive through a broker outage and through a full broker
Redis (`maxmemory` reached with `noeviction`), and give its connections timeouts."""

from __future__ import annotations

import functools
from typing import Any

import redis
from celery import Celery

from beluga.celery.outages import Quiet
from beluga.logs import get_logger
from beluga.settings import Settings
from beluga.stores.redis import socket_options

log = get_logger("beluga.celery")
_refused = Quiet(log, "the broker Redis's bookkeeping of taken messages")


def configure(app: Celery, settings: Settings) -> None:
    """Timeouts and keepalive on the broker's connections (`broker_transport_options`, where the app has
    not set them), so that a frozen broker Redis fails a publish or an acknowledgement within
    `BELUGA_REDIS_SOCKET_TIMEOUT` (the consumer's BRPOP waits in the event loop, which kombu checks on its
    own, and asks for at most `brpop_timeout`, 1 s, at a time). And `broker_channel_error_retry`: an
    error reply of the broker (a full Redis refusing a write, say) makes the consumer reconnect, as a lost
    connection does, instead of ending the worker with "Unrecoverable error"."""
    options = {**socket_options(settings.redis_socket_timeout, settings.redis_connect_timeout),
               **(app.conf.broker_transport_options or {})}
    if settings.broker_url.startswith("unix:"):
        options = {k: v for k, v in options.items() if not k.startswith("socket_keepalive")}
    app.conf.broker_transport_options = options
    app.conf.broker_channel_error_retry = True


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
    _survive_refused_writes(qos)
    qos._beluga_guarded = True


def _survive_refused_writes(qos: Any) -> None:
    """A full broker Redis (`maxmemory`, `noeviction`) refuses the QoS's writes, and kombu raised its
    error reply in the worker's event loop, which ended the worker ("Unrecoverable error:
    OutOfMemoryError"); nothing resumed once memory was freed. kombu acknowledges a message inside
    MULTI, and Redis refuses every command queued in a transaction while it is out of memory, the
    deletions included. So, on an error reply:

    - `ack` (and `reject` without requeue) deletes the message's unacked record again without a
      transaction (ZREM and HDEL free memory: Redis runs them); should that fail too, the record stays,
      and the message is delivered again after the visibility timeout, where Beluga skips it (an attempt
      runs only while it has a deadline; coordinate and wake tasks find nothing to do);
    - `append` (recording a message just taken) lets the message run without its unacked record: had
      the worker died meanwhile, the message would be lost as with any lost message, which Beluga finds
      through the attempt's lease or the sweep of dirty runs;
    - `reject` with requeue (a pool process died) leaves the message in the unacked records, put back
      after the visibility timeout (Beluga reclaims the attempt within the lease anyway);
    - `restore_visible` (the periodic search for messages past their visibility timeout) waits for the
      next round; `restore_unacked` (a channel closing) raises a connection error, which Celery and
      kombu handle (the records stay until their visibility timeout).

    Each is logged once, then quietly while it lasts (`Quiet`)."""
    from kombu.transport import virtual

    base = virtual.QoS

    def refused(what: str, exc: BaseException) -> None:
        _refused.error("the broker Redis refused %s (kept going without it)", what, exc=exc)

    def forget(self: Any, delivery_tag: str) -> None:
        try:
            with self.channel.conn_or_acquire() as client:
                client.zrem(self.unacked_index_key, delivery_tag)
                client.hdel(self.unacked_key, delivery_tag)
        except redis.ResponseError as exc:
            refused("to delete an acknowledged message's record", exc)
        base.ack(self, delivery_tag)

    ack, reject, append = qos.ack, qos.reject, qos.append
    restore_visible, restore_unacked = qos.restore_visible, qos.restore_unacked

    @functools.wraps(ack)
    def ack_(self: Any, delivery_tag: str) -> None:
        try:
            ack(self, delivery_tag)
        except redis.ResponseError:
            forget(self, delivery_tag)
            return
        _refused.recovered()

    @functools.wraps(reject)
    def reject_(self: Any, delivery_tag: str, requeue: bool = False) -> None:
        try:
            reject(self, delivery_tag, requeue=requeue)
        except redis.ResponseError as exc:
            if requeue:
                refused("to put a message back in its queue (it returns after the visibility timeout)", exc)
                base.ack(self, delivery_tag)
            else:
                forget(self, delivery_tag)

    @functools.wraps(append)
    def append_(self: Any, message: Any, delivery_tag: str) -> None:
        try:
            append(self, message, delivery_tag)
        except redis.ResponseError as exc:
            refused("to record a message taken from its queue", exc)
            base.append(self, message, delivery_tag)

    @functools.wraps(restore_visible)
    def restore_visible_(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return restore_visible(self, *args, **kwargs)
        except redis.ResponseError as exc:
            refused("to put back messages past their visibility timeout", exc)
            return None

    @functools.wraps(restore_unacked)
    def restore_unacked_(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return restore_unacked(self, *args, **kwargs)
        except redis.ResponseError as exc:
            raise redis.ConnectionError(f"the broker Redis refused to put back unacknowledged messages: {exc}") from exc

    qos.ack, qos.reject, qos.append = ack_, reject_, append_
    qos.restore_visible, qos.restore_unacked = restore_visible_, restore_unacked_
