"""The workflow code that the recorded histories in `tests/fixtures/histories/` replay against.

Each fixture file holds `{"workflow_id", "run_id", "workflow_type", "events": [...]}` with events as
`{"id", "type", "timestamp", "attrs"}`. Editing a workflow here in a way that changes its commands makes
the replay test of its fixture fail with `NonDeterminismError`: that is the point of the fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from beluga.core.errors import ApplicationError
from beluga.core.records import Event
from beluga.core.retry import RetryPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "histories"


def order(ctx: Any, order_id: str) -> Any:
    """Validate, wait for approval (at most an hour), process."""
    validated = ctx.execute_activity("validate_order", order_id,
                                     retry=RetryPolicy(max_attempts=3, initial_interval=0.5), timeout=30)
    try:
        approval = ctx.receive_signal("approve").receive(timeout=3600)
    except TimeoutError:
        return {"order": order_id, "status": "expired"}
    if approval != "approved":
        raise ApplicationError(f"order {order_id} rejected")
    return ctx.execute_activity("process_order", validated)


def reminders(ctx: Any, user: str) -> Any:
    """Deterministic replacements, a timer raced against a signal, and a child workflow."""
    token = ctx.side_effect(lambda: "token-from-the-outside-world")
    stamp = ctx.now().timestamp()
    roll = ctx.random()
    ident = str(ctx.uuid4())
    reminder = ctx.timer(60)
    snooze = ctx.receive_signal("snooze")
    first = ctx.wait_any(reminder, snooze)
    outcome = "snoozed" if first is snooze else "reminded"
    if first is snooze:
        snooze.receive()
    child = ctx.execute_child_workflow("notify", {"user": user, "outcome": outcome})
    return {"token": token, "started": stamp, "roll": roll, "id": ident, "outcome": outcome,
            "child": child}


WORKFLOWS = {"order": order, "reminders": reminders}


def load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    data["events"] = [Event(e["id"], e["type"], e["timestamp"], e["attrs"]) for e in data["events"]]
    return data


def dump(path: Path, workflow_id: str, run_id: str, workflow_type: str, events: list[Event]) -> None:
    """Write a fixture: one event per line, so a diff shows which events changed."""
    rows = ",\n".join("  " + json.dumps({"id": e.id, "type": e.type, "timestamp": e.timestamp,
                                          "attrs": e.attrs}) for e in events)
    head = json.dumps({"workflow_id": workflow_id, "run_id": run_id, "workflow_type": workflow_type})
    path.write_text(head[:-1] + ', "events": [\n' + rows + "\n]}\n")
