"""Drive a run by hand through the run driver (`beluga.core.driver`): no executor, no threads, no clock.

`Driver` plays an executor and its store in the simplest way: it hands each typed input
(`beluga.core.steps`) to the `RunDriver` in a step of its own, seals the step and appends its events to
the run's history, and keeps what the step asked for (its commands and effects). What an input records
is the driver's business alone. `replay` feeds a whole recorded history to a fresh `WorkflowInstance`,
for the tests of the instance itself (replay and non-determinism at the event level).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from beluga.core import commands as cmds
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.commands import Command, ScheduleActivity
from beluga.core.definitions import Registry, effective_retry
from beluga.core.failure import failure as failure_record
from beluga.core.instance import WorkflowInstance
from beluga.core.records import Event, EventType
from beluga.core.retry import GiveUp, Retry, RetryPolicy
from beluga.runs import new_run_state

E = EventType
T0 = 1_000_000.0  # the epoch second a run starts at
RAND = 0.5        # the randomness every step is given (a retry backoff's jitter)


def definition(fn: Callable[..., Any], name: str | None = None) -> Any:
    """A workflow definition from a private registry, so the process-wide one stays untouched."""
    return Registry().add_workflow(fn, name)


def instance(fn: Callable[..., Any], *, name: str | None = None, check_payload: Any = None,
             workflow_id: str = "wf-1", run_id: str = "run-1") -> WorkflowInstance:
    kwargs = {} if check_payload is None else {"check_payload": check_payload}
    return WorkflowInstance(definition(fn, name), workflow_id, run_id, **kwargs)


def policy(name: str, options: dict[str, Any]) -> RetryPolicy:
    """The retry policy of a call, as an executor with no registered activities decides it."""
    return effective_retry(options, None)


def _accept_any(value: Any) -> None:
    return None


class Driver:
    """A run of `fn` (None: its code is unknown, `name` says what it was started as) whose inputs the
    test delivers one at a time: a new run, or an open one loaded from its recorded `history`.
    `history` is what a store holds, `state` the run's summary as the store keeps it, `run` the
    `RunDriver`; `step`, `commands` and `effects` are those of the last step (the load's, at first)."""

    def __init__(self, fn: Callable[..., Any] | None, input: Any = None, *, seed: int = 7, name: str | None = None,
                 check_payload: Any = None, workflow_id: str = "wf-1", run_id: str = "run-1",
                 history: Sequence[Event] = (), permit: drv.PermitAsk | None = None) -> None:
        assert fn is not None or name is not None, "a run of unknown code needs the name it was started as"
        self.name: str = name or fn.__name__  # type: ignore[union-attr]
        self.permit = permit  # the executor's permits of limited activities (None: it enforces none)
        self.check_payload = check_payload or _accept_any
        started = new_run_state(self.name, workflow_id, input, None, None, T0)
        first = replace(started.history[0], attrs={**started.history[0].attrs, "seed": seed})
        self.state = replace(started, run_id=run_id, input=history[0].attrs.get("input") if history else input,
                             history=())
        self.history: list[Event] = list(history) or [first]
        self.clock = self.history[-1].timestamp
        self.retries: dict[int, st.ArmRetry] = {}  # armed by failed attempts, by activity seq
        self.run, step = self.load(fn)
        self.commit(step)

    @property
    def instance(self) -> WorkflowInstance:
        assert self.run.instance is not None, f"the run is stuck: {self.run.stuck}"
        return self.run.instance

    def types(self) -> list[str]:
        return [ev.type for ev in self.history]

    # --- the store and the executor ------------------------------------------------------------------
    def load(self, fn: Callable[..., Any] | None) -> tuple[drv.RunDriver, st.Step]:
        """The run loaded from its history now with `fn` as its code (None: none); nothing is written."""
        registry = Registry()
        if fn is not None:
            registry.add_workflow(fn, self.name)
        state = replace(self.state, history=tuple(self.history))
        return drv.load(state, registry.workflow, policy, check_payload=self.check_payload, now=self.clock,
                        permit=self.permit)

    def deploy(self, fn: Callable[..., Any] | None) -> st.Step:
        """Load the run again with `fn` as its code (a deploy or a restart) and write what its load owes."""
        self.run.close()
        self.run, step = self.load(fn)
        return self.commit(step)

    def commit(self, step: st.Step) -> st.Step:
        """Seal `step` and append it as a store does: at the version it expects, summary and all."""
        self.run.seal(step)
        assert step.expected == len(self.history)
        assert [ev.id for ev in step.events] == list(range(step.expected + 1, step.expected + 1 + len(step.events)))
        self.history.extend(step.events)
        if step.status is not None:
            self.state = replace(self.state, status=step.status, result=step.result)
        if step.error is not None:
            self.state = replace(self.state, error=step.error or None)
        self.step, self.effects = step, step.effects
        self.commands = recorded_commands(step.events)
        self.retries.update((e.seq, e) for e in step.effects if isinstance(e, st.ArmRetry))
        return step

    def apply(self, *inputs: st.Input, dt: float = 1.0) -> st.Step:
        """Deliver `inputs` in one step, `dt` seconds after the previous one; each must be taken."""
        self.clock += dt
        step = self.run.begin()
        for input in inputs:
            assert self.run.apply(step, input, self.clock, RAND), f"the run did not take {input!r}"
        return self.commit(step)

    def deliver(self, input: st.Input, *, dt: float = 1.0) -> list[Command]:
        """Deliver one input in a step of its own; the commands it caused."""
        self.apply(input, dt=dt)
        return self.commands

    # --- the inputs an executor delivers -------------------------------------------------------------
    def complete(self, seq: int, result: Any = None, attempt: int = 1, *, dt: float = 1.0) -> list[Command]:
        self._due(seq, attempt)
        return self.deliver(st.ActivityOutcome(seq, attempt, True, result), dt=dt)

    def fail(self, seq: int, error: dict[str, Any], *, attempt: int = 1, retry_in: float | None = None,
             dt: float = 1.0) -> list[Command]:
        """Attempt `attempt` failed; the worker decided to retry it in `retry_in` seconds (None: never)."""
        self._due(seq, attempt)
        return self.deliver(st.ActivityOutcome(
            seq, attempt, False, error, GiveUp("never") if retry_in is None else Retry(retry_in)), dt=dt)

    def _due(self, seq: int, attempt: int) -> None:
        """An outcome of a retry: first its backoff runs out, and the executor's timer says so."""
        armed = self.retries.get(seq)
        if armed is not None and armed.attempt == attempt:
            del self.retries[seq]
            self.apply(st.AttemptDue(seq, attempt), dt=max(armed.due - self.clock, 0.0))

    def fire(self, seq: int, *, dt: float = 1.0) -> list[Command]:
        return self.deliver(st.TimerFired(seq), dt=dt)

    def signal(self, name: str, payload: Any = None) -> list[Command]:
        return self.deliver(st.SignalReceived(name, payload))

    def cancel(self) -> list[Command]:
        return self.deliver(st.CancelRequested())

    def child_completed(self, seq: int, result: Any = None) -> list[Command]:
        return self.deliver(st.ChildClosed(seq, True, result))

    def child_failed(self, seq: int, error: dict[str, Any]) -> list[Command]:
        return self.deliver(st.ChildClosed(seq, False, error))

    def activity_seq(self, name: str) -> int:
        """The seq of the last scheduled activity called `name`."""
        for ev in reversed(self.history):
            if ev.type == E.ACTIVITY_SCHEDULED and ev.attrs["name"] == name:
                return int(ev.attrs["seq"])
        raise AssertionError(f"no activity {name!r} scheduled in {self.history}")


_COMMANDS: dict[str, Callable[[dict[str, Any]], Command]] = {
    E.ACTIVITY_SCHEDULED: lambda a: cmds.ScheduleActivity(
        a["seq"], a["name"], a["input"], {k: v for k, v in a.items() if k not in ("seq", "name", "input")}),
    E.TIMER_STARTED: lambda a: cmds.StartTimer(a["seq"], a["duration"]),
    E.MARKER_RECORDED: lambda a: cmds.RecordMarker(a["seq"], a["kind"], a["value"]),
    E.CHILD_WORKFLOW_STARTED: lambda a: cmds.StartChildWorkflow(a["seq"], a["workflow_type"], a["workflow_id"],
                                                                a["input"]),
    E.WORKFLOW_COMPLETED: lambda a: cmds.CompleteWorkflow(a["result"]),
    E.WORKFLOW_FAILED: lambda a: cmds.FailWorkflow(a["error"]),
    E.WORKFLOW_CANCELED: lambda a: cmds.CancelWorkflow(),
    E.WORKFLOW_CONTINUED_AS_NEW: lambda a: cmds.ContinueAsNew(a["input"]),
}


def recorded_commands(events: Sequence[Event]) -> list[Command]:
    """The commands `events` record, in order: `commands.to_event` read backwards (pinned by its test)."""
    return [_COMMANDS[ev.type](ev.attrs) for ev in events if ev.type in _COMMANDS]


def replay(fn: Callable[..., Any], history: Sequence[Event], **kwargs: Any) -> tuple[WorkflowInstance,
                                                                                    list[Command]]:
    """A fresh instance of `fn` activated with the whole `history` at once."""
    inst = instance(fn, **kwargs)
    return inst, inst.activate(list(history))


def failure(type: str = "ValueError", message: str = "boom", non_retryable: bool = False) -> dict[str, Any]:
    return failure_record(type, message, non_retryable=non_retryable,
                          traceback=f"Traceback ...\n{type}: {message}\n")


def scheduled(commands: Sequence[Command]) -> list[str]:
    """The activity names among `commands`, in order."""
    return [c.name for c in commands if isinstance(c, ScheduleActivity)]
