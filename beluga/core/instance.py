"""The replay engine: `WorkflowInstance.activate(events) -> commands`. Pure: no I/O, no clock, no threads.

The workflow function runs in a greenlet. The engine feeds history events one at a time; after each
input event (activity result, signal, timer, cancel, ...) it resumes the code until the code blocks
again, collecting the commands it issues. Every command has its own event in the history, right after
the input that caused it, so replaying a history re-runs the code through exactly the same states:
each command the code issues must match the recorded event at that position, else
`NonDeterminismError`. Between activations the greenlet stays suspended, so a live run costs O(1) per
step; an evicted run is rebuilt by replaying its history once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import greenlet

from beluga.core import commands as cmds
from beluga.core.context import _UNSET, ContinueAsNewRequest, Future, WorkflowContext
from beluga.core.definitions import WorkflowDefinition
from beluga.core.errors import (
    ActivityError,
    ChildWorkflowError,
    NonDeterminismError,
    QueryNotFound,
    UpdateNotFound,
    WorkflowCancelled,
    WorkflowError,
)
from beluga.core.failure import from_failure, to_failure
from beluga.core.records import COMMAND_EVENTS, Event, EventType

E = EventType


class _Evicted(BaseException):
    """Thrown into a suspended workflow to unwind it when the engine drops it from memory."""


def _accept_any(value: Any) -> None:
    return None


class _Handler:
    """An accepted update's handler, running in a greenlet of its own beside the workflow function; it
    is resumed after the workflow function, in the order the updates were accepted, so that replay runs
    every piece of code in the same order."""

    __slots__ = ("greenlet", "waiting")

    def __init__(self, g: greenlet.greenlet) -> None:
        self.greenlet = g
        self.waiting: Callable[[], bool] | None = None


class WorkflowInstance:
    """One run of one workflow definition, driven by its history."""

    def __init__(self, definition: WorkflowDefinition, workflow_id: str, run_id: str, *,
                 check_payload: Callable[[Any], Any] = _accept_any, read_only: bool = False) -> None:
        self.definition = definition
        self.workflow_id = workflow_id
        self.run_id = run_id
        self._check = check_payload
        self.version = 0                     # id of the last event applied or returned as a command
        self.now = 0.0                       # timestamp of the input being reacted to
        self.finished = False
        self.cancel_requested = False
        self._cancel_undelivered = False
        self._ctx: WorkflowContext | None = None
        self._input: Any = None
        self._greenlet: greenlet.greenlet | None = None
        self._waiting: Callable[[], bool] | None = None
        self._handlers: list[_Handler] = []  # accepted updates whose handlers have not ended
        self._evicting = False
        self._seq = 0
        self._issued: deque[cmds.Command] = deque()          # issued, not yet matched or returned
        self._futures: dict[int, tuple[str, Future[Any]]] = {}
        self._markers: dict[int, Any] = {}
        self._patches: set[str] = set()      # change ids of the patch markers the history holds
        self._patch_memo: dict[str, bool] = {}
        self._replaying = False              # the code re-runs an input it already reacted to once
        self._owed = False                   # the commands of the inputs applied last may be new
        self._last_input: Event | None = None
        # A replay only to answer a query: it must cause nothing, so a side effect not yet recorded
        # parks the code there instead of calling the function.
        self.read_only = read_only

    # --- the contract ---------------------------------------------------------------------------
    def activate(self, events: Iterable[Event], *, recording: bool = False) -> list[cmds.Command]:
        """Apply `events` (the next ones of the history, in order) and return the new commands, which
        the caller must record as the very next events. Raises `NonDeterminismError` when the code
        diverges from the history; the instance is then unusable.

        Every recorded input was fully processed when it was recorded: its commands follow it, so on
        replay it must issue exactly those, no more and no fewer. Only an input being recorded now
        (`recording=True`: the last of `events`) may issue new ones, and inputs whose commands are still
        owed: a run's start (created before its code first ran) and inputs recorded `deferred` (kept
        while the run was stuck, or followed by signals that arrived as it closed), whose commands come
        after the inputs that follow them."""
        batch = events if isinstance(events, (list, tuple)) else list(events)
        last_settled = -1  # the last event recorded after the inputs before it were processed
        for i, ev in enumerate(batch):
            if not ev.attrs.get("deferred"):
                last_settled = i
            if ev.type in COMMAND_EVENTS:
                if ev.type == E.MARKER_RECORDED:
                    if ev.attrs.get("kind") == cmds.PATCH:
                        self._patches.add(cmds.patch_id(ev.attrs.get("value")))
                    else:
                        self._markers[ev.attrs["seq"]] = ev.attrs.get("value")
        for i, ev in enumerate(batch):
            if ev.id != self.version + 1:
                raise ValueError(f"event #{ev.id} given after #{self.version}: histories are applied in order")
            self.version = ev.id
            if ev.type in COMMAND_EVENTS:
                self._match(ev)
                self._owed = False
            elif self._apply(ev):
                if self._issued and not self._owed:
                    raise self._divergence(ev, f"the code asked for {cmds.describe(self._issued[0])}",
                                           cmds.describe(self._issued[0]))
                self._owed = ev.type == E.WORKFLOW_STARTED or bool(ev.attrs.get("deferred"))
                self._last_input = ev
                # Something recorded after this input (its commands, a later input) means the code already
                # reacted to it once: the code re-runs what it did (see `patch`).
                self._replaying = i < last_settled
                self._run()
        if self._issued and not recording and not self._owed and self._last_input is not None:
            ev = self._last_input
            raise NonDeterminismError(
                f"workflow {self.definition.name!r} ({self.workflow_id}, run {self.run_id}) does not match its "
                f"history: after event #{ev.id} ({cmds.describe_event(ev)}), the last input of the history, the "
                f"code asked for {cmds.describe(self._issued[0])}, which the history does not record. The run "
                "is left untouched; deploy code that matches its history to let it continue.",
                position=ev.id, recorded=f"{cmds.describe_event(ev)} as the last input, and nothing after it",
                asked=cmds.describe(self._issued[0]))
        new = list(self._issued)
        self._issued.clear()
        self._owed = False
        self.version += len(new)
        return new

    def query(self, name: str, *args: Any) -> Any:
        handler = self._ctx._query_handlers.get(name) if self._ctx else None
        if handler is None:
            known = sorted(self._ctx._query_handlers) if self._ctx else []
            raise QueryNotFound(f"workflow {self.definition.name!r} ({self.workflow_id}) has no query "
                                f"handler {name!r}; it has {known} plus the built-in 'status' and 'result'")
        return handler(*args)

    def validate_update(self, name: str, *args: Any) -> None:
        """Run the validator of update `name` (read-only, as a query): it raises to reject the update.
        `UpdateNotFound` when the workflow set no handler of that name."""
        entry = self._ctx._update_handlers.get(name) if self._ctx else None
        if entry is None:
            known = sorted(self._ctx._update_handlers) if self._ctx else []
            raise UpdateNotFound(f"workflow {self.definition.name!r} ({self.workflow_id}) has no update "
                                 f"handler {name!r}; it has {known}")
        if entry[1] is not None:
            entry[1](*args)

    def is_pending(self, seq: int) -> bool:
        """Whether the code still waits for the outcome of command `seq`."""
        return seq in self._futures

    def close(self) -> None:
        """Drop the suspended code (eviction). Its `finally` blocks run but cannot issue commands."""
        g, self._greenlet = self._greenlet, None
        handlers, self._handlers = self._handlers, []
        for each in [g, *(h.greenlet for h in handlers)]:
            if each is not None and each and not each.dead:
                self._evicting = True
                try:
                    each.throw(_Evicted())
                except (_Evicted, greenlet.error):
                    pass

    # --- used by WorkflowContext, inside the workflow greenlet --------------------------------------
    def next_seq(self) -> int:
        self._ensure_live()
        self._seq += 1
        return self._seq

    def issue(self, command: cmds.Command, future: Future[Any] | None) -> Any:
        self._ensure_live()
        self._issued.append(command)
        if future is not None:
            label = command.name if isinstance(command, cmds.ScheduleActivity) else type(command).__name__
            if isinstance(command, cmds.StartChildWorkflow):
                label = command.workflow_type
            self._futures[command.seq] = (label, future)  # type: ignore[union-attr]
        return future

    def patch(self, change_id: str, deprecated: bool) -> bool:
        """`ctx.patched()`: True on a first execution (recording a patch marker) and on a replay of a
        history that holds the marker; False on a replay of a history recorded before the change (no
        marker, and none is asked for). The answer is kept for the run: later calls give the same."""
        if not self._in_workflow_code():
            raise WorkflowError("ctx.patched() can only be called by the workflow itself (not from a query handler)")
        use = self._patch_memo.get(change_id)
        if use is None:
            use = self._patch_memo[change_id] = change_id in self._patches or not self._replaying
            if use:
                self.issue(cmds.RecordMarker(0, cmds.PATCH, {"id": change_id, "deprecated": deprecated}), None)
        return use

    def recorded_marker(self, seq: int) -> Any:
        value = self._markers.pop(seq, _UNSET)
        if value is _UNSET and self.read_only:
            self.block(lambda: False)
        return value

    def check_payload(self, value: Any, where: str) -> None:
        from beluga.core.errors import SerializationError

        try:
            self._check(value)
        except SerializationError as exc:
            raise SerializationError(f"{where}: {exc}") from None

    def block(self, ready: Callable[[], bool]) -> None:
        """Park the workflow until `ready()`; delivers a pending cancellation as `WorkflowCancelled`."""
        g = self._greenlet
        current = greenlet.getcurrent()
        if g is None or current is not g:
            handler = next((h for h in self._handlers if h.greenlet is current), None)
            if handler is None:
                raise WorkflowError("workflow calls that wait can only be made by the workflow itself or its "
                                    "update handlers (not from a query handler or another thread)")
            while not ready():  # an update handler: a cancellation is the workflow function's to see
                handler.waiting = ready
                current.parent.switch()
                if self._evicting:
                    raise _Evicted()
            return
        while True:
            if self._cancel_undelivered:
                self._cancel_undelivered = False
                raise WorkflowCancelled(f"workflow {self.workflow_id} was cancelled")
            if ready():
                return
            self._waiting = ready
            g.parent.switch()
            if self._evicting:
                raise _Evicted()

    # --- internals --------------------------------------------------------------------------------
    def _in_workflow_code(self) -> bool:
        current = greenlet.getcurrent()
        return (self._greenlet is not None and current is self._greenlet) or any(
            h.greenlet is current for h in self._handlers)

    def _ensure_live(self) -> None:
        if self._evicting:
            raise _Evicted()

    def _match(self, ev: Event) -> None:
        if self._issued and cmds.matches(self._issued[0], ev):
            self._issued.popleft()
            return
        if cmds.is_deprecated_patch(ev):
            return  # recorded by a `deprecate_patch()` call the code no longer makes: nothing depends on it
        if not self._issued:
            raise self._divergence(ev, "the code asked for nothing more at this point", "nothing more")
        cmd = self._issued.popleft()
        raise self._divergence(ev, f"the code asked for {cmds.describe(cmd)}", cmds.describe(cmd))

    def _divergence(self, ev: Event, asked: str, what: str) -> NonDeterminismError:
        return NonDeterminismError(
            f"workflow {self.definition.name!r} ({self.workflow_id}, run {self.run_id}) does not match its "
            f"history: event #{ev.id} records {cmds.describe_event(ev)}, but {asked}. The run is left "
            "untouched; deploy code that matches its history to let it continue.",
            position=ev.id, recorded=cmds.describe_event(ev), asked=what)

    def _apply(self, ev: Event) -> bool:
        """Fold an input event into the workflow's state. False for events that are informational."""
        a = ev.attrs
        t = ev.type
        if t == E.WORKFLOW_STARTED:
            self._start(ev)
        elif t == E.ACTIVITY_COMPLETED or t == E.CHILD_WORKFLOW_COMPLETED:
            self._resolve(a["seq"], a.get("result"), None)
        elif t == E.ACTIVITY_FAILED:
            if a.get("retry_in") is not None:
                return False  # an attempt failed and another follows
            label = self._futures.get(a["seq"], ("?", None))[0]
            cause = from_failure(a["error"])
            attempts = a.get("attempt", 1)
            err = ActivityError(f"activity {label!r} failed after {attempts} attempt(s): {cause}", cause,
                                activity=label, attempts=attempts)
            self._resolve(a["seq"], None, err)
        elif t == E.CHILD_WORKFLOW_FAILED:
            label = self._futures.get(a["seq"], ("?", None))[0]
            cause = from_failure(a["error"])
            self._resolve(a["seq"], None, ChildWorkflowError(f"child workflow {label!r} failed: {cause}",
                                                             cause, activity=label, attempts=1))
        elif t == E.TIMER_FIRED:
            self._resolve(a["seq"], None, None)
        elif t == E.SIGNAL_RECEIVED:
            if self._ctx is not None:
                self._ctx.receive_signal(a["name"])._buffer.append(a.get("payload"))
        elif t == E.UPDATE_ACCEPTED:
            if self._ctx is None or self.finished:
                return False
            g = greenlet.greenlet(lambda: self._handle_update(str(a["update_id"]), str(a["name"]),
                                                              list(a.get("args") or ())))
            self._handlers.append(_Handler(g))
        elif t == E.CANCEL_REQUESTED:
            if not self.cancel_requested:
                self.cancel_requested = self._cancel_undelivered = True
        else:
            return False
        self.now = ev.timestamp
        return True

    def _start(self, ev: Event) -> None:
        a = ev.attrs
        self._input = a.get("input")
        self._ctx = WorkflowContext(self, self.workflow_id, self.run_id, self.definition.name,
                                    int(a.get("seed", 0)))
        self._ctx._search_attributes = dict(a.get("search_attributes") or {})
        self._ctx.memo = a.get("memo")
        self._greenlet = greenlet.greenlet(self._main)

    def _resolve(self, seq: int, value: Any, error: BaseException | None) -> None:
        entry = self._futures.pop(seq, None)
        if entry is not None:
            entry[1]._resolve(value, error)

    def _run(self) -> None:
        """Resume the workflow function until it waits, then the update handlers until none can go on,
        then the workflow function again if they let it, and so on: so a handler that a workflow's last
        step released ends before the workflow does."""
        moved = True
        while moved and not self.finished:
            moved = self._run_main()
            while self._run_handlers():
                moved = True

    def _run_handlers(self) -> bool:
        """Resume each update handler that can go on, in the order they were accepted; whether any did."""
        moved = False
        for h in list(self._handlers):
            if self.finished or (h.waiting is not None and not h.waiting()):
                continue
            h.waiting = None
            h.greenlet.parent = greenlet.getcurrent()
            h.greenlet.switch()
            moved = True
            if h.greenlet.dead:
                self._handlers.remove(h)
        return moved

    def _run_main(self) -> bool:
        """Resume the workflow function until it waits again; whether it ran at all."""
        g = self._greenlet
        if g is None or self.finished:
            return False
        g.parent = greenlet.getcurrent()
        ran = False
        while not self.finished:
            waiting = self._waiting
            if waiting is not None and not self._cancel_undelivered and not waiting():
                return ran
            self._waiting = None
            ran = True
            g.switch()
        return ran

    def _handle_update(self, update_id: str, name: str, args: list[Any]) -> None:
        """The greenlet of one accepted update: its handler's outcome is the command `CompleteUpdate`."""
        try:
            entry = self._ctx._update_handlers.get(name) if self._ctx else None
            if entry is None:
                raise UpdateNotFound(f"workflow {self.definition.name!r} has no update handler {name!r}")
            result = entry[0](*args)
            self.check_payload(result, f"result of update {name!r}")
            outcome = cmds.CompleteUpdate(update_id, result)
        except (_Evicted, greenlet.GreenletExit):
            return
        except ContinueAsNewRequest:
            outcome = cmds.CompleteUpdate(update_id, error=to_failure(WorkflowError(
                "ctx.continue_as_new() can only be called by the workflow function, not an update handler")))
        except Exception as exc:
            outcome = cmds.CompleteUpdate(update_id, error=to_failure(exc))
        self._issued.append(outcome)

    def _main(self) -> None:
        defn = self.definition
        try:
            result = defn.fn(self._ctx, self._input) if defn.takes_input else defn.fn(self._ctx)
            self.check_payload(result, "workflow result")
            outcome: cmds.Command = (cmds.CancelWorkflow() if self.cancel_requested
                                     else cmds.CompleteWorkflow(result))
        except (_Evicted, greenlet.GreenletExit):
            return
        except ContinueAsNewRequest as request:
            outcome = cmds.ContinueAsNew(request.input)
        except WorkflowCancelled as exc:
            outcome = cmds.CancelWorkflow() if self.cancel_requested else cmds.FailWorkflow(to_failure(exc))
        except Exception as exc:
            outcome = cmds.FailWorkflow(to_failure(exc))
        self._issued.append(outcome)
        self.finished = True
        self._greenlet = None
