"""What a replayed run's code is doing right now, for operators (`beluga show`): which signal channels it
is parked on, which signals wait unread in its buffers, which query handlers it has set. Read from a
suspended `WorkflowInstance` (a read-only replay); nothing here changes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beluga.core.context import SignalChannel
from beluga.core.instance import WorkflowInstance


@dataclass(frozen=True, slots=True)
class CodeState:
    waiting_for_signals: tuple[str, ...] = ()          # the channels the blocked call would take
    buffered_signals: dict[str, int] = field(default_factory=dict)  # received, not yet read by the code
    query_handlers: tuple[str, ...] = ()
    finished: bool = False


def code_state(instance: WorkflowInstance) -> CodeState:
    ctx = instance._ctx
    if ctx is None:
        return CodeState()
    buffered = {name: len(ch._buffer) for name, ch in sorted(ctx._channels.items()) if ch._buffer}
    return CodeState(tuple(_channels(instance._waiting)) if not instance.finished else (), buffered,
                     tuple(sorted(ctx._query_handlers)), instance.finished)


def _channels(ready: Any) -> list[str]:
    """The signal channels a blocking call's readiness check looks at: `channel.receive()` blocks on the
    channel's bound `done`, `receive(timeout)` and `wait_any(...)` on closures over channels and lists."""
    if ready is None:
        return []
    found: list[str] = []

    def visit(obj: Any, depth: int) -> None:
        if isinstance(obj, SignalChannel):
            if obj.name not in found:
                found.append(obj.name)
        elif isinstance(obj, (list, tuple)) and depth < 2:
            for item in obj:
                visit(item, depth + 1)

    visit(getattr(ready, "__self__", None), 0)
    for cell in getattr(ready, "__closure__", None) or ():
        try:
            visit(cell.cell_contents, 0)
        except ValueError:  # an empty cell
            pass
    return found
