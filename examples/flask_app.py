"""A Flask front end to the order workflow, run by the worker fleet.

    flask --app examples.flask_app run          # or: python -m examples.flask_app [--port 8000]

The app is only a client of the fleet: it starts `order_workflow` by its registered name and never
imports the workflow's code, so it needs nothing but the broker and Redis URLs (`BELUGA_BROKER_URL`,
`BELUGA_REDIS_URL`; see "Configuration of the fleet" in the API docs).

For people, `GET /` (also `GET /orders`) is a page: start an order, see the recent orders with their
status and progress, approve, reject or cancel them with a button. The Beluga web console is mounted at
`/console/` (read-only unless `BELUGA_CONSOLE_TOKEN` is set). The same URLs take form posts from the page
(answered with a redirect back to it) and JSON from programs:

    POST /orders                  {"order_id": "ORD-1"}      -> 201 {"workflow_id", "run_id"}
    POST /orders/<id>/approve     {"decision": "approved"}   -> 202 (any other decision rejects the order)
    GET  /orders/<id>                                         -> {"status", "progress", "result" | "error"}
    POST /orders/<id>/cancel                                  -> 202

Errors come back as JSON `{"error": message, "type": name}`: unknown id 404, a closed run (or an order
already in progress) 409, a bad payload or an unknown workflow 400, Redis unreachable 503, no worker
answering a query 504 (examples/orders_http.py). `examples.fastapi_app` is the same API on the async
client.
"""

from __future__ import annotations

import argparse
import os
from html import escape
from typing import Any
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from beluga import console, workflow
from examples.orders_http import ORDER_ID, ORDER_ID_RULE, WORKFLOW, status_of


class BadRequest(Exception):
    """The request body is not what the endpoint expects."""


def create_app(executor: workflow.DurableExecutor | None = None) -> Flask:
    """The app; `executor` defaults to the celery client configured from the environment."""
    app = Flask(__name__)
    ex = executor if executor is not None else workflow.new("celery")
    app.extensions["beluga"] = ex
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/console": console.create_app(ex)})  # type: ignore

    @app.get("/")
    @app.get("/orders")
    def orders_page() -> Any:
        return _page(ex), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post("/orders")
    def start_order() -> Any:
        order_id = _field("order_id")
        if not ORDER_ID.match(order_id):
            raise BadRequest(ORDER_ID_RULE)
        handle = ex.execute(WORKFLOW, workflow.WorkflowOptions(id=f"order-{order_id}", input=order_id))
        if _from_page():
            return _back(f"started {handle.id}")
        body = {"workflow_id": handle.id, "run_id": handle.run_id}
        return jsonify(body), 201, {"Location": f"/orders/{handle.id}"}

    @app.post("/orders/<workflow_id>/approve")
    def approve_order(workflow_id: str) -> Any:
        decision = _field("decision")
        ex.signal(workflow_id, workflow.Signal(name="approve", payload=decision, sender_id="flask_app"))
        if _from_page():
            return _back(f"{workflow_id}: {decision}")
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
        if _from_page():
            return _back(f"{workflow_id}: cancel requested")
        return jsonify({"workflow_id": workflow_id, "status": "cancel requested"}), 202

    @app.errorhandler(Exception)
    def to_json(exc: Exception) -> Any:
        if _from_page() and not isinstance(exc, HTTPException):   # the page shows what went wrong
            return _back(str(exc), error=True)
        if isinstance(exc, HTTPException):       # 404 unknown route, 405, malformed JSON, ...
            return jsonify({"error": exc.description, "type": type(exc).__name__}), exc.code
        if isinstance(exc, BadRequest):
            return jsonify({"error": str(exc), "type": "BadRequest"}), 400
        status = status_of(exc)
        if status is not None:
            return jsonify({"error": str(exc), "type": type(exc).__name__}), status
        app.logger.exception("unexpected error")
        return jsonify({"error": "internal error", "type": type(exc).__name__}), 500

    return app


def _from_page() -> bool:
    """A form posted by the page (the browser then gets a redirect back to it), not a JSON call."""
    return request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded",
                                                             "multipart/form-data")


def _back(message: str, error: bool = False) -> Any:
    return redirect("/?" + urlencode({"error" if error else "done": message}), code=303)


def _field(name: str) -> str:
    body = request.form if _from_page() else request.get_json(silent=True)
    if not isinstance(body, dict) and not _from_page():
        raise BadRequest("expected a JSON object body")
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name!r} must be a non-empty string")
    return value


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Orders</title><style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #1d2430; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #e4e7ec; padding: .4em; text-align: left; }}
form.inline {{ display: inline; }} .done {{ color: #157f3b; }} .error {{ color: #b42318; }}
button {{ margin-right: .3em; }}
</style></head><body><h1>Orders</h1>{message}
<form method="post" action="/orders"><label>Order id <input name="order_id" id="order-id" required
 pattern="[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}" placeholder="ORD-1"></label>
 <button id="start">Start order</button></form>
<h2>Recent orders</h2><table id="orders">
<tr><th>order</th><th>status</th><th>progress</th><th>outcome</th><th></th></tr>
{rows}</table><p><a href="/console/">All runs in the Beluga console</a></p></body></html>"""


def _page(ex: workflow.DurableExecutor) -> str:
    rows = []
    for state in ex.store.list(workflow.WorkflowFilter(workflow_type=WORKFLOW, limit=20)):  # type: ignore
        wid = escape(state.workflow_id)
        is_open = state.status is workflow.WorkflowStatus.RUNNING
        progress = _progress(ex, state.workflow_id) if is_open else None
        outcome = (state.result if state.status is workflow.WorkflowStatus.COMPLETED
                   else (state.error or {}).get("message", ""))
        buttons = ""
        if is_open:
            buttons = "".join(
                f'<form class="inline" method="post" action="/orders/{wid}/{action}">'
                + (f'<input type="hidden" name="decision" value="{decision}">' if decision else "")
                + f'<button id="{action}-{decision or "run"}-{wid}">{label}</button></form>'
                for action, decision, label in (("approve", "approved", "Approve"), ("approve", "rejected", "Reject"),
                                                ("cancel", "", "Cancel")))
        rows.append(f'<tr data-order="{wid}"><td>{wid}</td><td class="status">{escape(state.status.value)}</td>'
                    f"<td>{escape(str(progress or ''))}</td><td>{escape(str(outcome or ''))}</td>"
                    f"<td>{buttons}</td></tr>")
    done, error = request.args.get("done"), request.args.get("error")
    message = (f'<p class="done" id="done">{escape(done)}</p>' if done else "") + \
              (f'<p class="error" id="error">{escape(error)}</p>' if error else "")
    return PAGE.format(message=message, rows="".join(rows) or '<tr><td colspan="5">no orders yet</td></tr>')


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
