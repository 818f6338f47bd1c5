"""The shop's workflows (BELUGA_IMPORTS = "shop.workflows"): an order that waits for approval. Its
activities run in the project's workers, with Django set up (they read Django's settings here; they could
use the ORM)."""

from django.conf import settings

from beluga import workflow


@workflow.activity()
def check_order(order_id: str) -> dict:
    return {"order_id": order_id, "shop": settings.SHOP_NAME}


@workflow.activity()
def ship_order(checked: dict) -> str:
    return f"{checked['shop']} shipped order {checked['order_id']}"


@workflow.defn()
def shop_order(ctx: workflow.WorkflowContext, order_id: str) -> str:
    checked = ctx.execute_activity(check_order, order_id)
    stage = {"now": "awaiting approval"}
    ctx.set_query_handler("progress", lambda: stage["now"])
    if ctx.receive_signal("approve").receive() != "approved":
        raise workflow.ApplicationError("order rejected")
    stage["now"] = "shipping"
    return ctx.execute_activity(ship_order, checked)
