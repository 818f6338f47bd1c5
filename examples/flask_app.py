"""A Flask front end to the order workflow, run by the worker fleet.

    flask --app examples.flask_app run          # or: python -m examples.flask_app [--port 8000]

The app is only a client of the fleet: it starts `order_workflow` by its registered name and never
imports the workflow's code, so it needs nothing but the broker and Redis URLs (`BELUGA_BROKER_URL`,
`BELUGA_REDIS_URL`; see "Configuration of the fleet" in the API docs).

    POST /orders                  {"order_id": "ORD-1"}      -> 201 {"workflow_id", "run_id"}
    POST /orders/<id>/approve     {"decision": "approved"}   -> 202 (any other decision rejects the order)
    GET  /orders/<id>                                         -> {"status", "progress", "result" | "error"}
    POST /orders/<id>/cancel                                  -> 202

Errors come back as JSON `{"error": message, "type": name}`: unknown id 404, a closed run (or an order
already in progress) 409, a bad payload or an unknown workflow 400, no worker answering a query 504.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from beluga import workflow

WORKFLOW = "order_workflow"             # registered by workers.orders, which this app does not import
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (workflow.WorkflowNotFound, 404),
    (workflow.WorkflowNotRunning, 409),
    (workflow.WorkflowAlreadyStarted, 409),
    (workflow.SerializationError, 400),
    (workflow.ConfigurationError, 400),
    (TimeoutError, 504),                 # a query no worker answered in time
]


class BadRequest(Exception):
    """The request body is not what the endpoint expects."""


def create_app(executor: workflow.DurableExecutor | None = None) -> Flask:
    """The app; `executor` defaults to the celery client configured from the environment."""
    app = Flask(__name__)
    ex = executor if executor is not None else workflow.new("celery")
    app.extensions["beluga"] = ex

    @app.post("/orders")
    def start_order() -> Any:
        order_id = _field("order_id")
        if not ORDER_ID.match(order_id):
            raise BadRequest("order_id must be 1-128 letters, digits or ._:- and start with a letter or digit")
        handle = ex.execute(WORKFLOW, workflow.WorkflowOptions(id=f"order-{order_id}", input=order_id))
        body = {"workflow_id": handle.id, "run_id": handle.run_id}
        return jsonify(body), 201, {"Location": f"/orders/{handle.id}"}

    @app.post("/orders/<workflow_id>/approve")
    def approve_order(workflow_id: str) -> Any:
        decision = _field("decision")
        ex.signal(workflow_id, workflow.Signal(name="approve", payload=decision, sender_id="flask_app"))
        return jsonify({"workflow_id": workflow_id, "decision": decision}), 202

    @app.get("/orders/<workflow_id>")
    def get_order(workflow_id: str) -> Any:
        state = ex.summary(workflow_id)
        body: dict[str, Any] = {"workflow_id": workflow_id, "run_id": state.run_id,
                                "status": state.status.value, "progress": _progress(ex, workflow_id)}
        if state.status is workflow.WorkflowStatus.COMPLETED:
            body["result"] = state.result
        elif state.error:
            body["error"] = {"type": state.error.get("type"), "message": state.error.get("message")}
        return jsonify(body)

    @app.post("/orders/<workflow_id>/cancel")
    def cancel_order(workflow_id: str) -> Any:
        ex.cancel(workflow_id)
        return jsonify({"workflow_id": workflow_id, "status": "cancel requested"}), 202

    @app.errorhandler(Exception)
    def to_json(exc: Exception) -> Any:
        if isinstance(exc, HTTPException):       # 404 unknown route, 405, malformed JSON, ...
            return jsonify({"error": exc.description, "type": type(exc).__name__}), exc.code
        if isinstance(exc, BadRequest):
            return jsonify({"error": str(exc), "type": "BadRequest"}), 400
        for kind, status in ERROR_STATUS:
            if isinstance(exc, kind):
                return jsonify({"error": str(exc), "type": type(exc).__name__}), status
        app.logger.exception("unexpected error")
        return jsonify({"error": "internal error", "type": type(exc).__name__}), 500

    return app


def _field(name: str) -> str:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object body")
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name!r} must be a non-empty string")
    return value


def _progress(ex: workflow.DurableExecutor, workflow_id: str) -> Any:
    """The workflow's "progress" query, or None before the workflow has set its handler."""
    try:
        return ex.query(workflow_id, "progress")
    except workflow.QueryNotFound:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description="The order workflow's HTTP API (Flask development server)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    create_app().run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
