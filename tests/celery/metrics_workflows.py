"""Workflows for the metrics tests that both the worker and the test process import: a client that has
a run's code may take its first step itself (see `CeleryExecutor.execute`)."""

from __future__ import annotations

from beluga import workflow


@workflow.activity()
def metrics_echo(value: object) -> object:
    return value


@workflow.defn()
def metrics_done(ctx: workflow.WorkflowContext, value: object) -> object:
    """Completes after one activity."""
    return ctx.execute_activity(metrics_echo, value)


@workflow.defn()
def metrics_parked(ctx: workflow.WorkflowContext, _: object = None) -> object:
    """Parks at once: its first step records no event."""
    return ctx.receive_signal("go").receive()


@workflow.defn()
def metrics_refused(ctx: workflow.WorkflowContext, _: object = None) -> None:
    """Fails in its first step."""
    raise workflow.ApplicationError("refused")
