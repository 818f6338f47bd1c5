"""The reference design's order workflow: validate the order, park until a person approves, process it."""

from __future__ import annotations

from beluga import workflow


@workflow.activity()
def validate_order(order_id: str) -> dict:
    """Pretend to check stock and payment; a real one calls other services."""
    if not order_id:
        raise workflow.ApplicationError("an order id is required", non_retryable=True)
    return {"order_id": order_id, "valid": True,
            "idempotency_key": workflow.activity_info().idempotency_key}


@workflow.activity()
def process_order(validated: dict) -> str:
    return f"order {validated['order_id']} processed"


@workflow.defn()
def order_workflow(ctx: workflow.WorkflowContext, order_id: str) -> str:
    validated = ctx.execute_activity(validate_order, order_id,
                                     retry=workflow.default_retry_policy(), timeout=30)
    state = {"stage": "awaiting approval"}
    ctx.set_query_handler("progress", lambda: state["stage"])
    approval = ctx.receive_signal("approve").receive()
    if approval != "approved":
        raise workflow.ApplicationError("order rejected")
    state["stage"] = "processing"
    return ctx.execute_activity(process_order, validated)
