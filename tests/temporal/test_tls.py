"""The temporal executor reaches a secured Temporal: TLS with the server's CA, mutual TLS with a client
certificate, an API key, or a ready `temporalio` client of the caller's own. The dev server speaks plain
gRPC, so a real TLS front (tests/temporal/tls_proxy.py: certificates made with `openssl`, a client
certificate required) stands before it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.temporal.executor import Connection
from tests.executors import workflows as W
from tests.temporal.tls_proxy import Certs, TLSProxy, make_certs


@pytest.fixture(scope="module")
def secured(temporal_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TLSProxy, Certs]]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    proxy = TLSProxy(certs, temporal_server.target)
    try:
        yield proxy, certs
    finally:
        proxy.stop()


def _run_one(extra: dict[str, Any]) -> Any:
    queue = f"beluga-tls-{uuid.uuid4().hex[:8]}"
    with workflow.new("temporal", workflow.Config(extra={"worker": True, "task_queue": queue, **extra})) as ex:
        return ex.execute(W.wf_echo, workflow.WorkflowOptions(id=f"tls-{uuid.uuid4().hex[:8]}",
                                                             input="over TLS")).result(timeout=30)


def test_mutual_tls_with_an_api_key(secured: tuple[TLSProxy, Certs]) -> None:
    proxy, certs = secured
    assert _run_one({"target": proxy.target, "tls_ca": str(certs.ca), "tls_cert": str(certs.client_cert),
                     "tls_key": str(certs.client_key), "api_key": "k-123"}) == "over TLS"


def test_without_the_client_certificate_the_server_refuses(secured: tuple[TLSProxy, Certs]) -> None:
    proxy, certs = secured
    refused = proxy.handshakes_refused
    with pytest.raises(workflow.ConfigurationError, match=f"cannot reach Temporal at {proxy.target}"):
        workflow.new("temporal", workflow.Config(extra={"target": proxy.target, "tls_ca": str(certs.ca)}))
    assert proxy.handshakes_refused > refused          # refused by the TLS front, not lost on the way


def test_half_a_client_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(workflow.ConfigurationError, match="needs both a client certificate and its key"):
        Connection(tls_cert=str(tmp_path / "c.pem")).options()
    with pytest.raises(workflow.ConfigurationError, match="cannot read a TLS file"):
        Connection(tls_ca=str(tmp_path / "missing.pem")).options()
    assert "k-123" not in repr(Connection(api_key="k-123"))


def test_settings_name_the_connection() -> None:
    from beluga.settings import Settings

    s = Settings.load(environ={"BELUGA_TEMPORAL_TLS": "yes", "BELUGA_TEMPORAL_API_KEY": "k-9",
                               "BELUGA_TEMPORAL_TARGET": "cloud.example:7233"}, file="/nonexistent")
    c = Connection.from_settings(s)
    assert (c.target, c.tls, c.api_key) == ("cloud.example:7233", True, "k-9")
    assert c.options()["tls"] is True and c.options()["api_key"] == "k-9"
    assert "k-9" not in repr(s)


def test_a_ready_client_of_ones_own(secured: tuple[TLSProxy, Certs]) -> None:
    from temporalio.client import Client
    from temporalio.service import TLSConfig

    proxy, certs = secured
    client = asyncio.run(Client.connect(proxy.target, tls=TLSConfig(
        server_root_ca_cert=certs.ca.read_bytes(), client_cert=certs.client_cert.read_bytes(),
        client_private_key=certs.client_key.read_bytes())))
    assert _run_one({"client": client}) == "over TLS"
