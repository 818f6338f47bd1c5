"""Four versions of one workflow, the steps of a change made with `ctx.patched()`, and the recorded
histories of `tests/fixtures/histories/ship_*.json` they replay against.

v1 reserves and ships; v2 adds a fraud check behind `patched("fraud-check")`; v3 deprecates the patch
(the check always runs); v4 removes the call. Each version notes the branches it took in `SEEN`, so tests
can tell which code path a replay went down (replay compares commands, not their inputs)."""

from __future__ import annotations

from typing import Any

SEEN: list[str] = []


def ship_v1(ctx: Any, order: str) -> Any:
    ctx.execute_activity("reserve", order)
    ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [order, "unchecked"])


def ship_v2(ctx: Any, order: str) -> Any:
    if ctx.patched("fraud-check"):
        SEEN.append("checked")
        ctx.execute_activity("check_fraud", order)
    else:
        SEEN.append("unchecked")
    ctx.execute_activity("reserve", order)
    ctx.receive_signal("go").receive()
    note = "checked" if ctx.patched("fraud-check") else "unchecked"   # the same answer all run long
    SEEN.append(f"ship {note}")
    return ctx.execute_activity("ship", [order, note])


def ship_v3(ctx: Any, order: str) -> Any:
    ctx.deprecate_patch("fraud-check")
    SEEN.append("checked")
    ctx.execute_activity("check_fraud", order)
    ctx.execute_activity("reserve", order)
    ctx.receive_signal("go").receive()
    SEEN.append("ship checked")
    return ctx.execute_activity("ship", [order, "checked"])


def ship_v4(ctx: Any, order: str) -> Any:
    SEEN.append("checked")
    ctx.execute_activity("check_fraud", order)
    ctx.execute_activity("reserve", order)
    ctx.receive_signal("go").receive()
    SEEN.append("ship checked")
    return ctx.execute_activity("ship", [order, "checked"])


def record(fn: Any, *, until_parked: bool = False) -> Any:
    """Run `fn` by hand (see tests/core/harness.py) to the end, or until it waits for the signal."""
    from tests.core.harness import Driver

    d = Driver(fn, "o-1", name="ship", workflow_id="ship-1", run_id=f"run-{fn.__name__}")
    while True:
        scheduled = [c for c in d.commands if type(c).__name__ == "ScheduleActivity"]
        if scheduled:
            d.complete(scheduled[0].seq, f"{scheduled[0].name} done")
            continue
        if until_parked or d.instance.finished:
            return d
        d.signal("go", "now")
