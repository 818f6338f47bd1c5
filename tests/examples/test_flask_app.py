"""The reference order workflow end to end through the Flask example, against the real session fleet."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from examples.flask_app import create_app


@pytest.fixture(scope="module")
def client(fleet) -> Any:
    app = create_app(fleet.executor())
    app.testing = True
    return app.test_client()


def _order_id() -> str:
    return f"ORD-{uuid.uuid4().hex[:10]}"


def _start(client: Any, order_id: str) -> str:
    resp = client.post("/orders", json={"order_id": order_id})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["workflow_id"] == f"order-{order_id}" and body["run_id"]
    assert resp.headers["Location"] == f"/orders/{body['workflow_id']}"
    return body["workflow_id"]


def _wait(client: Any, workflow_id: str, done: Any, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        resp = client.get(f"/orders/{workflow_id}")
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        if done(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{workflow_id} never got there; last seen {body}")


def _awaiting_approval(client: Any, workflow_id: str) -> dict:
    return _wait(client, workflow_id, lambda b: b["progress"] == "awaiting approval")


def test_order_approved_end_to_end(client) -> None:
    order_id = _order_id()
    workflow_id = _start(client, order_id)
    first = client.get(f"/orders/{workflow_id}").get_json()
    assert first["status"] == "running"
    assert first["progress"] in (None, "awaiting approval")     # null until the handler is set

    parked = _awaiting_approval(client, workflow_id)
    assert parked["status"] == "running" and "result" not in parked

    resp = client.post(f"/orders/{workflow_id}/approve", json={"decision": "approved"})
    assert resp.status_code == 202
    assert resp.get_json() == {"workflow_id": workflow_id, "decision": "approved"}

    done = _wait(client, workflow_id, lambda b: b["status"] != "running")
    assert done["status"] == "completed"
    assert done["result"] == f"order {order_id} processed"
    assert done["progress"] == "processing"


def test_rejected_order_fails(client) -> None:
    workflow_id = _start(client, _order_id())
    _awaiting_approval(client, workflow_id)
    assert client.post(f"/orders/{workflow_id}/approve", json={"decision": "no"}).status_code == 202
    done = _wait(client, workflow_id, lambda b: b["status"] != "running")
    assert done["status"] == "failed"
    assert "result" not in done
    assert "order rejected" in done["error"]["message"]


def test_cancel_order(client) -> None:
    workflow_id = _start(client, _order_id())
    _awaiting_approval(client, workflow_id)
    resp = client.post(f"/orders/{workflow_id}/cancel")
    assert resp.status_code == 202
    done = _wait(client, workflow_id, lambda b: b["status"] != "running")
    assert done["status"] == "canceled"


def test_unknown_order_is_404(client) -> None:
    for resp in (client.get("/orders/order-nope"),
                 client.post("/orders/order-nope/approve", json={"decision": "approved"}),
                 client.post("/orders/order-nope/cancel")):
        assert resp.status_code == 404
        assert resp.get_json()["type"] == "WorkflowNotFound"
        assert "order-nope" in resp.get_json()["error"]


def test_closed_run_and_duplicate_start_are_409(client) -> None:
    order_id = _order_id()
    workflow_id = _start(client, order_id)

    dup = client.post("/orders", json={"order_id": order_id})     # the same order while its run is open
    assert dup.status_code == 409
    assert dup.get_json()["type"] == "WorkflowAlreadyStarted"

    _awaiting_approval(client, workflow_id)
    client.post(f"/orders/{workflow_id}/approve", json={"decision": "approved"})
    _wait(client, workflow_id, lambda b: b["status"] == "completed")
    for resp in (client.post(f"/orders/{workflow_id}/approve", json={"decision": "approved"}),
                 client.post(f"/orders/{workflow_id}/cancel")):
        assert resp.status_code == 409
        assert resp.get_json()["type"] == "WorkflowNotRunning"
        assert "completed" in resp.get_json()["error"]


@pytest.mark.parametrize("path, body", [
    ("/orders", {"order_id": 42}),                      # wrong type
    ("/orders", {"order_id": ""}),
    ("/orders", {"order_id": "has/slash"}),
    ("/orders", {}),
    ("/orders", ["ORD-1"]),                             # not an object
    ("/orders/order-x/approve", {"decision": True}),
])
def test_bad_payload_is_400(client, path: str, body: Any) -> None:
    resp = client.post(path, json=body)
    assert resp.status_code == 400
    assert resp.get_json()["type"] == "BadRequest"


def test_malformed_json_is_400(client) -> None:
    resp = client.post("/orders", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400
    assert "JSON" in resp.get_json()["error"]


def test_oversized_payload_is_400(fleet) -> None:
    """The client refuses a payload above `max_payload_bytes` with SerializationError."""
    client = create_app(fleet.executor(max_payload_bytes=64)).test_client()
    resp = client.post("/orders/order-x/approve", json={"decision": "x" * 100})
    assert resp.status_code == 400
    assert resp.get_json()["type"] == "SerializationError"
    assert "max_payload_bytes" in resp.get_json()["error"]


def test_unknown_workflow_name_is_400(fleet, monkeypatch) -> None:
    """A name no worker announced is a ConfigurationError (the fleet has announced its workflows)."""
    monkeypatch.setattr("examples.flask_app.WORKFLOW", "no_such_workflow")
    client = create_app(fleet.executor()).test_client()
    resp = client.post("/orders", json={"order_id": _order_id()})
    assert resp.status_code == 400
    assert resp.get_json()["type"] == "ConfigurationError"
    assert "BELUGA_IMPORTS" in resp.get_json()["error"]


def test_unknown_route_is_json_404(client) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and resp.get_json()["type"] == "NotFound"


def test_default_executor_comes_from_the_environment(fleet, monkeypatch) -> None:
    monkeypatch.setenv("BELUGA_BROKER_URL", fleet.url)
    monkeypatch.setenv("BELUGA_REDIS_URL", fleet.url)
    app = create_app()
    ex = app.extensions["beluga"]
    assert ex.app.conf.beluga_settings.history_url == fleet.url
    resp = app.test_client().get("/orders/order-nope")
    assert resp.status_code == 404


def test_workflow_is_started_by_name_only() -> None:
    """The web app imports no workflow code: loading it registers nothing."""
    import examples.flask_app as module

    assert module.WORKFLOW == "order_workflow"
    assert "demo" not in (module.__dict__.keys())
    assert not any(line.startswith(("import beluga.demo", "from beluga.demo"))
                   for line in open(module.__file__).read().splitlines())



def test_the_page_a_person_uses(client) -> None:
    """GET / is a page: a form starts an order, the order shows with its progress and buttons, and the
    buttons approve it; each form post answers with a redirect back to the page."""
    order_id = _order_id()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'<form method="post" action="/orders">' in page.data and b'name="order_id"' in page.data
    assert client.get("/orders").status_code == 200

    resp = client.post("/orders", data={"order_id": order_id})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/?done=")
    workflow_id = f"order-{order_id}"
    _awaiting_approval(client, workflow_id)
    page = client.get("/").get_data(as_text=True)
    assert f'data-order="{workflow_id}"' in page and "awaiting approval" in page
    assert f'action="/orders/{workflow_id}/approve"' in page

    resp = client.post(f"/orders/{workflow_id}/approve", data={"decision": "approved"})
    assert resp.status_code == 303
    _wait(client, workflow_id, lambda b: b["status"] == "completed")
    page = client.get("/").get_data(as_text=True)
    assert f"order {order_id} processed" in page


def test_the_page_shows_errors_instead_of_json(client) -> None:
    resp = client.post("/orders", data={"order_id": "has/slash"})
    assert resp.status_code == 303 and "error=" in resp.headers["Location"]
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'id="error"' in page and "order_id must be" in page
    resp = client.post("/orders/order-nope/cancel", data={"from": "page"})
    assert "no+workflow+with+id" in resp.headers["Location"]


def test_the_console_is_mounted_read_only(client) -> None:
    workflow_id = _start(client, _order_id())
    _awaiting_approval(client, workflow_id)
    runs = client.get("/console/")
    assert runs.status_code == 200 and workflow_id.encode() in runs.data
    assert b'href="/console/run?id=' in runs.data
    resp = client.post("/console/run/cancel", data={"id": workflow_id})
    assert resp.status_code == 403
    assert client.get(f"/orders/{workflow_id}").get_json()["status"] == "running"
