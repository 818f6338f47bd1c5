"""One `store` fixture for the contract suite: each backend is one line of `STORES`. The servers are real
and started by the tests on free loopback ports: Redis is tests/conftest.py's `redis_url`; NATS, the
Kafka-protocol broker and the Dapr state API (a stand-in that implements its documented contract:
there is no daprd here) are the session fixtures below."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beluga.stores import InMemoryStore, RedisStore, SQLiteStore
from beluga.stores.base import WorkflowStore
from tests.servers import KafkaBroker, NatsServer
from tests.stores.dapr_server import dapr_state_server
from tests.stores.restarting import RestartingStore


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def _nats(tmp: Path) -> WorkflowStore:
    from beluga.stores.nats import NatsStore

    return NatsStore(_SERVERS["nats"], prefix=_prefix(), tail=3)  # a short tail: chunks get sealed


def _kafka(tmp: Path) -> WorkflowStore:
    from beluga.stores.kafka import KafkaStore

    return KafkaStore(_SERVERS["kafka"], prefix=_prefix())


def _kafka_restarted(tmp: Path) -> WorkflowStore:
    """Kafka with the client closed after every write and a new one, rebuilt from the topic, answering
    the next call."""
    from beluga.stores.kafka import KafkaStore

    prefix = _prefix()
    return RestartingStore(lambda: KafkaStore(_SERVERS["kafka"], prefix=prefix))


def _dapr(tmp: Path) -> WorkflowStore:
    from beluga.stores.dapr import DaprStore

    return DaprStore(_SERVERS["dapr"], store="statestore", prefix=_prefix(), index_shards=4, tail=3)


STORES: dict[str, Callable[[Path], WorkflowStore]] = {
    "memory": lambda tmp: InMemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(str(tmp / "beluga.db")),
    "redis": lambda tmp: RedisStore(_SERVERS["redis"], prefix=_prefix()),
    "nats": _nats,
    "kafka": _kafka,
    "kafka-restarted": _kafka_restarted,
    "dapr": _dapr,
}
_SERVERS: dict[str, str] = {}
_SERVER_FIXTURES = {"redis": "redis_url", "nats": "nats_url", "kafka": "kafka_bootstrap",
                    "kafka-restarted": "kafka_bootstrap", "dapr": "dapr_url"}


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def dapr_url() -> Iterator[str]:
    """The Dapr state API as documented, served by tests/stores/dapr_server.py (no daprd here)."""
    with dapr_state_server("statestore") as (url, _):
        yield url


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkflowStore]:
    fixture = _SERVER_FIXTURES.get(request.param)
    if fixture is not None:
        _SERVERS[request.param.split("-")[0]] = request.getfixturevalue(fixture)
    s = STORES[request.param](tmp_path)
    try:
        yield s
    finally:
        s.close()
