"""`deploy_steps` as it was before the deploy: a short timer first, so neither version replays the
other's histories (each raises `NonDeterminismError` on them). Never imported beside deploy_workflows."""

from __future__ import annotations

from typing import Any

from beluga import workflow
from tests.celery.workflows import fleet_step


@workflow.defn(name="deploy_steps")
def deploy_steps_v1(ctx: workflow.WorkflowContext, arg: dict[str, Any]) -> list[Any]:
    ctx.set_query_handler("version", lambda: "v1")
    ctx.sleep(0.01)
    total = 0
    for i in range(arg["steps"]):
        total += ctx.execute_activity(fleet_step, {"i": i})
    return ["v1", total]
