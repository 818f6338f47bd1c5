"""The order workflow through the FastAPI example on the async client: uvicorn started in a subprocess on
a free loopback port, real HTTP requests, the session's real workers. One uvicorn process with one event
loop: a request waiting for a result and the request that approves the order are served at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import fastapi  # noqa: F401  (the test extra installs it and uvicorn: a missing one fails, never skips)
import pytest
import uvicorn  # noqa: F401

from tests.conftest import ROOT
from tests.fleet import free_port


@pytest.fixture(scope="module")
def api(fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELUGA_")}
    env.update(BELUGA_BROKER_URL=fleet.url, BELUGA_REDIS_URL=fleet.redis_url,
               PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}")
    log = tmp_path_factory.mktemp("fastapi") / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_app:create_app",
                                 "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("GET", f"{base}/orders")
                break
            except (urllib.error.URLError, ConnectionError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"uvicorn did not come up: {log.read_text()}") from exc
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def call(method: str, url: str, body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def _wait(api: str, workflow_id: str, done: Any) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(400):
        status, body, _ = call("GET", f"{api}/orders/{workflow_id}")
        assert status == 200, body
        if done(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{workflow_id} never got there; last seen {body}")


def test_an_order_started_approved_and_its_result_read_over_http(api: str) -> None:
    order_id = f"ORD-{uuid.uuid4().hex[:10]}"
    status, body, headers = call("POST", f"{api}/orders", {"order_id": order_id})
    assert status == 201, body
    workflow_id = body["workflow_id"]
    assert workflow_id == f"order-{order_id}" and body["run_id"] and headers["location"] == f"/orders/{workflow_id}"
    assert call("POST", f"{api}/orders", {"order_id": order_id})[0] == 409   # already in progress
    _wait(api, workflow_id, lambda b: b["progress"] == "awaiting approval")

    # the result is awaited on the server's one loop while the approval comes in on another request
    waited: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: waited.update(got=call("GET", f"{api}/orders/{workflow_id}/result"
                                                                       "?timeout=30")))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()  # still waiting for the approval
    status, body, _ = call("POST", f"{api}/orders/{workflow_id}/approve", {"decision": "approved"})
    assert (status, body) == (202, {"workflow_id": workflow_id, "decision": "approved"})
    waiter.join(timeout=60)
    status, body, _ = waited["got"]
    assert status == 200, body
    assert body == {"workflow_id": workflow_id, "status": "completed", "result": f"order {order_id} processed"}

    assert call("GET", f"{api}/orders/{workflow_id}")[1]["progress"] == "processing"
    assert workflow_id in {o["workflow_id"] for o in call("GET", f"{api}/orders")[1]}
    assert call("POST", f"{api}/orders/{workflow_id}/approve", {"decision": "approved"})[0] == 409  # closed


def test_errors_over_http(api: str) -> None:
    missing = f"order-ORD-{uuid.uuid4().hex[:10]}"
    status, body, _ = call("GET", f"{api}/orders/{missing}")
    assert (status, body["type"]) == (404, "WorkflowNotFound")
    assert call("POST", f"{api}/orders/{missing}/cancel")[0] == 404
    assert call("POST", f"{api}/orders", {"order_id": "-bad id"})[0] == 400

    order_id = f"ORD-{uuid.uuid4().hex[:10]}"
    workflow_id = call("POST", f"{api}/orders", {"order_id": order_id})[1]["workflow_id"]
    status, body, _ = call("GET", f"{api}/orders/{workflow_id}/result?timeout=0.3")
    assert (status, body["type"]) == (504, "TimeoutError")
    assert call("POST", f"{api}/orders/{workflow_id}/cancel")[0] == 202
    status, body, _ = call("GET", f"{api}/orders/{workflow_id}/result?timeout=30")
    assert (status, body["status"]) == (200, "canceled")
