"""The changes to kombu's Redis transport (beluga/celery/kombu_redis.py), against a real Redis: a channel
builds its synchronous client once per connection pool, messages still flow through it, and a pool
replaced after a connection loss gets a client of its own. The QoS guard is exercised by
tests/celery/test_outages.py, which cuts real brokers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Connection

from beluga.celery import kombu_redis


@pytest.fixture
def channel(redis_url: str) -> Iterator[object]:
    kombu_redis.patch()
    with Connection(redis_url) as conn:
        ch = conn.channel()
        try:
            yield ch
        finally:
            ch.close()


def test_one_client_per_pool(channel: object) -> None:
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
        assert first.connection_pool is channel.pool
    assert channel._create_client(asynchronous=True) is not channel._create_client(asynchronous=True)


def test_messages_flow_through_the_shared_client(channel: object) -> None:
    queue = "beluga-test-kombu-redis"
    channel.queue_declare(queue)
    try:
        for n in range(3):
            channel.basic_publish(channel.prepare_message(f"m{n}"), exchange="", routing_key=queue)
        assert channel._size(queue) == 3
        assert [channel.basic_get(queue, no_ack=True).body for _ in range(3)] == [b"m0", b"m1", b"m2"]
    finally:
        channel.queue_delete(queue)


def test_a_replaced_pool_gets_a_new_client(channel: object) -> None:
    with channel.conn_or_acquire() as before:
        pass
    channel._disconnect_pools()  # what kombu does after a connection loss
    with channel.conn_or_acquire() as after:
        assert after is not before
        assert after.connection_pool is channel.pool
        assert after.ping()
