"""Workflows the CLI tests drive through the `beluga` command (`--imports tests.cli.workflows`).

Activities leave marks in files under the directory named by the workflow's input, so a test in another
process can see what ran."""

from __future__ import annotations

from pathlib import Path

from beluga import workflow

FAST = workflow.RetryPolicy(max_attempts=2, initial_interval=0.01)


@workflow.activity(name="cli_note")
def note(arg: dict) -> str:
    path = Path(arg["dir"]) / f"{arg['what']}.{workflow.activity_info().workflow_id.replace('/', '_')}"
    path.write_text("done")
    return arg["what"]


@workflow.activity(name="cli_check")
def check(arg: dict) -> str:
    """Fails while the file `<dir>/broken` exists: a retried run can succeed once it is gone."""
    if (Path(arg["dir"]) / "broken").exists():
        raise workflow.ApplicationError("the check is broken", non_retryable=arg.get("fatal", True))
    return "checked"


@workflow.defn(name="cli_order")
def cli_order(ctx: workflow.WorkflowContext, arg: dict) -> str:
    ctx.execute_activity(check, arg, retry=FAST)
    ctx.set_query_handler("progress", lambda: "awaiting approval")
    ctx.set_query_handler("echo", lambda *args: list(args))
    try:
        decision = ctx.receive_signal("approve").receive()
    except workflow.WorkflowCancelled:
        ctx.execute_activity(note, {**arg, "what": "cleanup"})
        raise
    ctx.execute_activity(note, {**arg, "what": "shipped"})
    return f"order {arg['order']} {decision}"


@workflow.defn(name="cli_backoff")
def cli_backoff(ctx: workflow.WorkflowContext, arg: dict) -> str:
    return ctx.execute_activity(check, arg, retry=workflow.RetryPolicy(max_attempts=3, initial_interval=3600,
                                                                       max_interval=3600))


@workflow.defn(name="cli_sleeper")
def cli_sleeper(ctx: workflow.WorkflowContext, hours: float) -> str:
    ctx.sleep(hours * 3600)
    return "woke"


@workflow.defn(name="cli_quick")
def cli_quick(ctx: workflow.WorkflowContext, arg: dict) -> dict:
    if arg.get("fail"):
        raise workflow.ApplicationError("asked to fail")
    ctx.sleep(0.2)    # a short timer: the command carries the run through it before exiting
    return {"echo": arg, "tuple": (1, 2)}


@workflow.defn(name="cli_counter")
def cli_counter(ctx: workflow.WorkflowContext, start: int) -> int:
    state = {"count": start, "done": False}

    def positive(n: int) -> None:
        if n <= 0:
            raise workflow.ApplicationError(f"amount must be positive, got {n}")

    def add(n: int) -> int:
        state["count"] += n
        return state["count"]

    ctx.set_update_handler("add", add, validator=positive)
    ctx.set_update_handler("finish", lambda: state.update(done=True) or state["count"])
    ctx.wait_condition(lambda: bool(state["done"]))
    return state["count"]


@workflow.defn(name="cli_inbox")
def cli_inbox(ctx: workflow.WorkflowContext, arg: dict) -> int:
    """Stays open collecting "msg" signals until "stop": each signal a batch sends shows in its history."""
    msgs = ctx.receive_signal("msg")
    ctx.receive_signal("stop").receive()
    count = 0
    while msgs.try_receive() is not None:
        count += 1
    return count
