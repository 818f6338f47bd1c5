"""A FastAPI front end to the order workflow, on the async client: every call is awaited on the event
loop (no thread pool), so one process serves many requests that wait on Redis or on a run's result.

    uvicorn --factory examples.fastapi_app:create_app --port 8000    # or: python -m examples.fastapi_app

Like `examples.flask_app`, it is only a client of the fleet: it starts `order_workflow` by name and needs
only `BELUGA_BROKER_URL` and `BELUGA_REDIS_URL`. The executor is made as the app starts (it belongs to
the server's event loop) and closed as it stops. The JSON API is the Flask example's, plus a result wait:

    POST /orders                  {"order_id": "ORD-1"}      -> 201 {"workflow_id", "run_id"}
    POST /orders/{id}/approve     {"decision": "approved"}   -> 202 (any other decision rejects the order)
    GET  /orders/{id}                                         -> {"status", "progress", "result" | "error"}
    GET  /orders/{id}/result?timeout=30                       -> {"status", "result" | "error"} once closed
    POST /orders/{id}/cancel                                  -> 202
    GET  /orders                                              -> the 20 most recent orders

Errors come back as JSON `{"error": message, "type": name}` with the statuses of examples/orders_http.py
(unknown id 404, closed run 409, bad input 400, Redis unreachable 503, no answer in time 504).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from beluga import workflow
from examples.orders_http import ORDER_ID, ORDER_ID_RULE, WORKFLOW, status_of


class Order(BaseModel):
    order_id: str


class Decision(BaseModel):
    decision: str


class BadRequest(Exception):
    """The request body is not what the endpoint expects."""


def create_app(executor: workflow.AsyncExecutor | None = None) -> FastAPI:
    """The app; `executor` defaults to the async celery client configured from the environment, made as
    the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ex = executor if executor is not None else workflow.new_async("celery")
        app.state.beluga = ex
        try:
            yield
        finally:
            await ex.aclose()

    app = FastAPI(title="Orders", lifespan=lifespan)

    def ex(request: Request) -> workflow.AsyncExecutor:
        return request.app.state.beluga  # type: ignore[no-any-return]

    @app.post("/orders", status_code=201)
    async def start_order(order: Order, request: Request) -> JSONResponse:
        if not ORDER_ID.match(order.order_id):
            raise BadRequest(ORDER_ID_RULE)
        handle = await ex(request).execute(WORKFLOW, workflow.WorkflowOptions(id=f"order-{order.order_id}",
                                                                              input=order.order_id))
        return JSONResponse({"workflow_id": handle.id, "run_id": handle.run_id}, status_code=201,
                            headers={"Location": f"/orders/{handle.id}"})

    @app.get("/orders")
    async def list_orders(request: Request) -> list[dict[str, Any]]:
        runs = await ex(request).list(workflow.WorkflowFilter(workflow_type=WORKFLOW, limit=20))
        return [{"workflow_id": s.workflow_id, "status": s.status.value} for s in runs]

    @app.post("/orders/{workflow_id}/approve", status_code=202)
    async def approve_order(workflow_id: str, body: Decision, request: Request) -> dict[str, Any]:
        await ex(request).signal(workflow_id, workflow.Signal(name="approve", payload=body.decision,
                                                              sender_id="fastapi_app"))
        return {"workflow_id": workflow_id, "decision": body.decision}

    @app.get("/orders/{workflow_id}")
    async def get_order(workflow_id: str, request: Request) -> dict[str, Any]:
        state = await ex(request).summary(workflow_id)
        body = {"workflow_id": workflow_id, "run_id": state.run_id, "status": state.status.value,
                "progress": await _progress(ex(request), workflow_id)}
        return {**body, **_outcome(state)}

    @app.get("/orders/{workflow_id}/result")
    async def order_result(workflow_id: str, request: Request, timeout: float = 30.0) -> dict[str, Any]:
        """Waits, without holding a thread, until the order closes (504 after `timeout` seconds)."""
        await ex(request).wait_closed(workflow_id, timeout)
        state = await ex(request).summary(workflow_id)
        return {"workflow_id": workflow_id, "status": state.status.value, **_outcome(state)}

    @app.post("/orders/{workflow_id}/cancel", status_code=202)
    async def cancel_order(workflow_id: str, request: Request) -> dict[str, Any]:
        await ex(request).cancel(workflow_id)
        return {"workflow_id": workflow_id, "status": "cancel requested"}

    async def to_json(request: Request, exc: Exception) -> JSONResponse:
        status = 400 if isinstance(exc, BadRequest) else status_of(exc)
        if status is None:
            return JSONResponse({"error": "internal error", "type": type(exc).__name__}, status_code=500)
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=status)

    for kind in (workflow.WorkflowError, TimeoutError, BadRequest):  # anything else: FastAPI's own 500
        app.add_exception_handler(kind, to_json)

    return app


def _outcome(state: workflow.WorkflowState) -> dict[str, Any]:
    if state.status is workflow.WorkflowStatus.COMPLETED:
        return {"result": state.result}
    if state.error:
        return {"error": {"type": state.error.get("type"), "message": state.error.get("message")}}
    return {}


async def _progress(ex: workflow.AsyncExecutor, workflow_id: str) -> Any:
    """The workflow's "progress" query, or None before the workflow has set its handler (or once closed)."""
    try:
        return await ex.query(workflow_id, "progress")
    except workflow.QueryNotFound:
        return None


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The order workflow's HTTP API (FastAPI on uvicorn)")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
