"""The `beluga` command on the provider stores, by URL: `--store nats://...`, `kafka://...`, `dapr://...`
start, list, show, signal and export runs there, against real servers (NATS with JetStream, noida-db's
Kafka-protocol broker, and the Dapr state API's stand-in of tests/stores/dapr_server.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.cli.helpers import beluga
from tests.stores.conftest import dapr_url, kafka_bootstrap, nats_url  # noqa: F401  (session servers)

IMPORTS = "tests.cli.workflows"


def _url(kind: str, request: pytest.FixtureRequest) -> str:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    if kind == "nats":
        return f"{request.getfixturevalue('nats_url')}?prefix={prefix}"
    if kind == "kafka":
        return f"kafka://{request.getfixturevalue('kafka_bootstrap')}?prefix={prefix}"
    http = request.getfixturevalue("dapr_url")
    return f"dapr://{http.split('://', 1)[1]}?store=statestore&prefix={prefix}"


@pytest.mark.parametrize("kind", ["nats", "kafka", "dapr"])
def test_a_run_on_a_provider_store_from_start_to_completion(kind: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    store = _url(kind, request)
    arg = json.dumps({"dir": str(tmp_path), "order": "p-1"})
    r = beluga("--store", store, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--id", "p-1", "--json",
               timeout=120)
    assert r.code == 0, r.err
    listed = beluga("--store", store, "list", "--json", timeout=120)
    assert listed.code == 0, listed.err
    assert [(row["workflow_id"], row["status"]) for row in listed.json()] == [("p-1", "running")]
    shown = beluga("--store", store, "show", "p-1", "--json", "--imports", IMPORTS, timeout=120).json()
    assert shown["waiting"]["signals"] == ["approve"]
    r = beluga("--store", store, "--imports", IMPORTS, "signal", "p-1", "approve", "--payload", '"approved"',
               timeout=120)
    assert r.code == 0 and r.out.strip() == "signalled p-1: approve", r.err
    assert (tmp_path / "shipped.p-1").exists()        # the command carried the run to its end on that store
    shown = beluga("--store", store, "show", "p-1", "--json", timeout=120).json()
    assert shown["status"] == "completed" and shown["result"] == "order p-1 approved"
    exported = beluga("--store", store, "export", "p-1", "-o", str(tmp_path / "p-1.json"), timeout=120)
    assert exported.code == 0, exported.err
    assert json.loads((tmp_path / "p-1.json").read_text())["workflow_id"] == "p-1"


@pytest.mark.parametrize("url, says", [
    ("kafka://", "names no host"),
    ("nats://127.0.0.1:4222?bucket=x", "takes prefix in its query, not bucket"),
    ("dapr://127.0.0.1:3500?topic=x", "not topic"),
])
def test_bad_provider_store_urls_are_one_line_errors(url: str, says: str) -> None:
    line = beluga("--store", url, "list").one_error_line()
    assert says in line, line


def test_the_console_on_a_provider_store(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from werkzeug.test import Client

    from beluga import console

    store = _url("nats", request)
    arg = json.dumps({"dir": str(tmp_path), "order": "c-1"})
    assert beluga("--store", store, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--id", "c-1",
                  timeout=120).code == 0
    app = console.create_app(store, read_only=True, imports=IMPORTS)
    try:
        page = Client(app).get("/").get_data(as_text=True)
        assert "c-1" in page and "cli_order" in page
        run = Client(app).get("/run?id=c-1").get_data(as_text=True)
        assert "approve" in run               # what it waits on
    finally:
        app.target.close()
