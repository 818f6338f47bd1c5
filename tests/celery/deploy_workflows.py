"""The workflow a rolling deploy brings: a worker that imports this module has `deploy_steps`; one that
does not (imports fine otherwise, the activities included) lacks it (tests/celery/test_handoff.py)."""

from __future__ import annotations

from typing import Any

from beluga import workflow
from tests.celery.workflows import fleet_step


@workflow.defn(name="deploy_steps")
def deploy_steps(ctx: workflow.WorkflowContext, arg: dict[str, Any]) -> list[Any]:
    ctx.set_query_handler("version", lambda: "v2")
    total = 0
    for i in range(arg["steps"]):
        total += ctx.execute_activity(fleet_step, {"i": i})
    return ["v2", total]
