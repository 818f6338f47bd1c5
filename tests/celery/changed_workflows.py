"""`wf_versioned` as someone edited it after runs had started: a worker that imports this module
instead of `tests.executors.workflows` has code that no longer matches those runs' histories."""

from __future__ import annotations

from typing import Any

from beluga import workflow


@workflow.activity()
def echo(value: Any) -> Any:
    return value


@workflow.activity()
def add_one(x: int) -> int:
    return x + 1


@workflow.defn(name="wf_versioned")
def changed_versioned(ctx: workflow.WorkflowContext, value: Any) -> Any:
    """A timer where the history has the `echo` activity."""
    ctx.sleep(1)
    payload = ctx.receive_signal("go").receive()
    return [value, payload]
