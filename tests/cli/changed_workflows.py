"""`cli_order` as a later release might have changed it: a timer where the history holds the check."""

from __future__ import annotations

from beluga import workflow


@workflow.defn(name="cli_order")
def cli_order(ctx: workflow.WorkflowContext, arg: dict) -> str:
    ctx.sleep(1)
    return "changed"
