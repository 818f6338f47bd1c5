"""Lifecycle hooks. They observe and never steer: a hook that raises is logged and execution goes on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from beluga.logs import get_logger

log = get_logger("beluga.hooks")

Hook = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Each callback takes `(workflow_id, payload)`: the input, result, error or `Signal`."""

    on_workflow_start: Hook | None = None
    on_workflow_complete: Hook | None = None
    on_workflow_fail: Hook | None = None
    on_activity_start: Hook | None = None
    on_activity_complete: Hook | None = None
    on_signal: Hook | None = None
    on_retry: Hook | None = None

    def emit(self, name: str, workflow_id: str, payload: Any) -> None:
        """Call hook `name`, isolating its failure."""
        hook = getattr(self, name)
        if hook is None:
            return
        try:
            hook(workflow_id, payload)
        except Exception:
            log.exception("hook %s raised for workflow %s; ignored", name, workflow_id)


HOOK_NAMES = tuple(f.name for f in fields(Hooks))


def compose_hooks(*hooks: Hooks | None) -> Hooks:
    """One `Hooks` that calls each given set in order; one failing does not stop the others."""
    present = [h for h in hooks if h is not None]

    def chain(name: str) -> Hook | None:
        targets = [h for h in present if getattr(h, name) is not None]
        if not targets:
            return None

        def call(workflow_id: str, payload: Any) -> None:
            for h in targets:
                h.emit(name, workflow_id, payload)

        return call

    return Hooks(**{name: chain(name) for name in HOOK_NAMES})
