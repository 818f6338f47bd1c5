"""Workflows of the tests of activity queues that no worker consumes and of continue-as-new's crash
backup (tests/celery/test_queues.py, test_continue_crash.py). Activities count their runs in the Redis
named by BELUGA_TEST_CALLS_URL, so a test sees whether an attempt ran, and how often."""

from __future__ import annotations

from beluga import workflow
from tests.celery.workflows import _redis


@workflow.activity(name="fleet_send_email", queue="emails")
def send_email(arg: dict) -> str:
    """An activity with a queue of its own, which only workers started with `-Q emails` consume."""
    info = workflow.activity_info()
    _redis("BELUGA_TEST_CALLS_URL").hincrby("test:emails", f"{info.workflow_id}:{info.attempt}", 1)
    return f"sent to {arg['to']}"


@workflow.defn(name="fleet_email")
def email(ctx: workflow.WorkflowContext, arg: dict) -> str:
    return ctx.execute_activity(send_email, arg, schedule_to_start_timeout=arg.get("schedule_to_start"))


@workflow.activity(name="fleet_hop_step")
def hop_step(n: int) -> int:
    info = workflow.activity_info()
    _redis("BELUGA_TEST_CALLS_URL").hincrby("test:hop-steps", f"{info.workflow_id}:{info.run_id}", 1)
    return n


@workflow.defn(name="fleet_hops")
def hops(ctx: workflow.WorkflowContext, arg: dict) -> int:
    """One activity per run, then continue as new until `until`."""
    n = ctx.execute_activity(hop_step, arg["n"])
    if n < arg["until"]:
        ctx.continue_as_new({"n": n + 1, "until": arg["until"]})
    return n
