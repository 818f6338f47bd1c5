"""Drive a `WorkflowInstance` by hand: no executor, no threads, no clock.

`Driver` plays the executor's part in the simplest way: it appends each input event to the history,
activates the instance with it and records the commands it returns as the next events, exactly as the
engine does. `replay` feeds a whole recorded history to a fresh instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from beluga.core.commands import Command, ScheduleActivity, to_event
from beluga.core.definitions import Registry
from beluga.core.instance import WorkflowInstance
from beluga.core.records import Event, EventType

E = EventType
T0 = 1_000_000.0  # the epoch second the hand-built histories start at


def definition(fn: Callable[..., Any], name: str | None = None) -> Any:
    """A workflow definition from a private registry, so the process-wide one stays untouched."""
    return Registry().add_workflow(fn, name)


def instance(fn: Callable[..., Any], *, name: str | None = None, check_payload: Any = None,
             workflow_id: str = "wf-1", run_id: str = "run-1") -> WorkflowInstance:
    kwargs = {} if check_payload is None else {"check_payload": check_payload}
    return WorkflowInstance(definition(fn, name), workflow_id, run_id, **kwargs)


class Driver:
    """A run of `fn` whose inputs the test delivers one at a time."""

    def __init__(self, fn: Callable[..., Any], input: Any = None, *, seed: int = 7, name: str | None = None,
                 check_payload: Any = None, workflow_id: str = "wf-1", run_id: str = "run-1") -> None:
        self.instance = instance(fn, name=name, check_payload=check_payload, workflow_id=workflow_id,
                                 run_id=run_id)
        self.history: list[Event] = []
        self.clock = T0
        self.commands = self.deliver(E.WORKFLOW_STARTED, {"workflow_type": self.instance.definition.name,
                                                          "input": input, "seed": seed})

    def deliver(self, type: str, attrs: dict[str, Any] | None = None, *, dt: float = 1.0) -> list[Command]:
        """Record one input event (at `dt` seconds after the previous one) and the commands it causes."""
        if self.history:
            self.clock += dt
        ev = Event(len(self.history) + 1, type, self.clock, dict(attrs or {}))
        self.history.append(ev)
        self.commands = self.instance.activate([ev], recording=True)
        for cmd in self.commands:
            self.history.append(to_event(cmd, len(self.history) + 1, self.clock))
        assert self.instance.version == len(self.history)
        return self.commands

    # --- the inputs an executor records -------------------------------------------------------------
    def complete(self, seq: int, result: Any = None, attempt: int = 1) -> list[Command]:
        self.deliver(E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt})
        return self.deliver(E.ACTIVITY_COMPLETED, {"seq": seq, "attempt": attempt, "result": result})

    def fail(self, seq: int, error: dict[str, Any], *, attempt: int = 1,
             retry_in: float | None = None) -> list[Command]:
        self.deliver(E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt})
        return self.deliver(E.ACTIVITY_FAILED, {"seq": seq, "attempt": attempt, "error": error,
                                                "retry_in": retry_in})

    def fire(self, seq: int, *, dt: float = 1.0) -> list[Command]:
        return self.deliver(E.TIMER_FIRED, {"seq": seq}, dt=dt)

    def signal(self, name: str, payload: Any = None) -> list[Command]:
        return self.deliver(E.SIGNAL_RECEIVED, {"name": name, "payload": payload, "sender_id": None})

    def cancel(self) -> list[Command]:
        return self.deliver(E.CANCEL_REQUESTED, {})

    def child_completed(self, seq: int, result: Any = None) -> list[Command]:
        return self.deliver(E.CHILD_WORKFLOW_COMPLETED, {"seq": seq, "result": result})

    def child_failed(self, seq: int, error: dict[str, Any]) -> list[Command]:
        return self.deliver(E.CHILD_WORKFLOW_FAILED, {"seq": seq, "error": error})

    def activity_seq(self, name: str) -> int:
        """The seq of the last scheduled activity called `name`."""
        for ev in reversed(self.history):
            if ev.type == E.ACTIVITY_SCHEDULED and ev.attrs["name"] == name:
                return int(ev.attrs["seq"])
        raise AssertionError(f"no activity {name!r} scheduled in {self.history}")


def replay(fn: Callable[..., Any], history: Sequence[Event], **kwargs: Any) -> tuple[WorkflowInstance,
                                                                                    list[Command]]:
    """A fresh instance of `fn` activated with the whole `history` at once."""
    inst = instance(fn, **kwargs)
    return inst, inst.activate(list(history))


def failure(type: str = "ValueError", message: str = "boom", non_retryable: bool = False) -> dict[str, Any]:
    return {"type": type, "message": message, "traceback": f"Traceback ...\n{type}: {message}\n",
            "non_retryable": non_retryable}


def scheduled(commands: Sequence[Command]) -> list[str]:
    """The activity names among `commands`, in order."""
    return [c.name for c in commands if isinstance(c, ScheduleActivity)]
