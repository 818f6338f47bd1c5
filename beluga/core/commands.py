"""What workflow code asks the engine to do. Each command becomes exactly one history event, and on
replay each recorded command event must match the command the code issues at that position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beluga.core.records import Event, EventType


@dataclass(frozen=True, slots=True)
class ScheduleActivity:
    seq: int
    name: str
    input: Any = None
    options: dict[str, Any] = field(default_factory=dict)  # retry, the timeouts, queue


@dataclass(frozen=True, slots=True)
class StartTimer:
    seq: int
    duration: float


@dataclass(frozen=True, slots=True)
class RecordMarker:
    seq: int
    kind: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class StartChildWorkflow:
    seq: int
    workflow_type: str
    workflow_id: str
    input: Any = None
    parent_close_policy: str = "terminate"  # a `ParentClosePolicy` value


@dataclass(frozen=True, slots=True)
class CompleteUpdate:
    """An update handler ended: `result`, or the failure record `error` it raised."""

    update_id: str
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UpsertSearchAttributes:
    """`ctx.upsert_search_attributes(...)`: the values to set (None removes one). Unlike inputs, the values
    are compared on replay: what a run is listed by is what its code says, so a change is a divergence."""

    seq: int
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompleteWorkflow:
    result: Any = None


@dataclass(frozen=True, slots=True)
class FailWorkflow:
    error: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    pass


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    input: Any = None


# `ctx.patched(change_id)` records a marker of this kind, value `{"id": change_id, "deprecated": bool}`.
# Patch markers take no sequence number (seq 0), so code that stops calling `deprecate_patch()` keeps the
# numbering of everything after it, and replay can skip a deprecated marker nobody asks for.
PATCH = "patch"


def patch_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else None


def is_deprecated_patch(ev: Event) -> bool:
    a = ev.attrs
    return (ev.type == EventType.MARKER_RECORDED and a.get("kind") == PATCH and isinstance(a.get("value"), dict)
            and bool(a["value"].get("deprecated")))


Command = (ScheduleActivity | StartTimer | RecordMarker | StartChildWorkflow | CompleteWorkflow
           | FailWorkflow | CancelWorkflow | ContinueAsNew | CompleteUpdate | UpsertSearchAttributes)

CLOSING_COMMANDS = (CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew)


def to_event(cmd: Command, event_id: int, timestamp: float) -> Event:
    """The history event that records `cmd`."""
    if isinstance(cmd, ScheduleActivity):
        return Event(event_id, EventType.ACTIVITY_SCHEDULED, timestamp,
                     {"seq": cmd.seq, "name": cmd.name, "input": cmd.input, **cmd.options})
    if isinstance(cmd, StartTimer):
        return Event(event_id, EventType.TIMER_STARTED, timestamp,
                     {"seq": cmd.seq, "duration": cmd.duration, "fire_at": timestamp + cmd.duration})
    if isinstance(cmd, RecordMarker):
        return Event(event_id, EventType.MARKER_RECORDED, timestamp,
                     {"seq": cmd.seq, "kind": cmd.kind, "value": cmd.value})
    if isinstance(cmd, StartChildWorkflow):
        return Event(event_id, EventType.CHILD_WORKFLOW_STARTED, timestamp,
                     {"seq": cmd.seq, "workflow_type": cmd.workflow_type, "workflow_id": cmd.workflow_id,
                      "input": cmd.input, "parent_close_policy": cmd.parent_close_policy})
    if isinstance(cmd, CompleteUpdate):
        outcome = {"result": cmd.result} if cmd.error is None else {"error": cmd.error}
        return Event(event_id, EventType.UPDATE_COMPLETED, timestamp, {"update_id": cmd.update_id, **outcome})
    if isinstance(cmd, UpsertSearchAttributes):
        return Event(event_id, EventType.SEARCH_ATTRIBUTES_UPSERTED, timestamp,
                     {"seq": cmd.seq, "attributes": cmd.attributes})
    if isinstance(cmd, CompleteWorkflow):
        return Event(event_id, EventType.WORKFLOW_COMPLETED, timestamp, {"result": cmd.result})
    if isinstance(cmd, FailWorkflow):
        return Event(event_id, EventType.WORKFLOW_FAILED, timestamp, {"error": cmd.error})
    if isinstance(cmd, CancelWorkflow):
        return Event(event_id, EventType.WORKFLOW_CANCELED, timestamp, {})
    if isinstance(cmd, ContinueAsNew):
        return Event(event_id, EventType.WORKFLOW_CONTINUED_AS_NEW, timestamp, {"input": cmd.input})
    raise TypeError(f"not a command: {cmd!r}")


def describe(cmd: Command) -> str:
    """How an error message names a command: the kind and what identifies it."""
    if isinstance(cmd, ScheduleActivity):
        return f"activity {cmd.name!r} (seq {cmd.seq})"
    if isinstance(cmd, StartTimer):
        return f"timer of {cmd.duration:g}s (seq {cmd.seq})"
    if isinstance(cmd, RecordMarker):
        if cmd.kind == PATCH:
            return f"patch marker {patch_id(cmd.value)!r}"
        return f"{cmd.kind} marker (seq {cmd.seq})"
    if isinstance(cmd, StartChildWorkflow):
        return f"child workflow {cmd.workflow_type!r} (seq {cmd.seq})"
    if isinstance(cmd, CompleteUpdate):
        return f"the end of update {cmd.update_id!r}"
    if isinstance(cmd, UpsertSearchAttributes):
        return f"an upsert of search attributes {cmd.attributes!r:.120} (seq {cmd.seq})"
    return type(cmd).__name__


def describe_event(ev: Event) -> str:
    a = ev.attrs
    if ev.type == EventType.ACTIVITY_SCHEDULED:
        return f"activity {a.get('name')!r} (seq {a.get('seq')})"
    if ev.type == EventType.TIMER_STARTED:
        return f"timer of {a.get('duration', 0):g}s (seq {a.get('seq')})"
    if ev.type == EventType.MARKER_RECORDED:
        if a.get("kind") == PATCH:
            return f"patch marker {patch_id(a.get('value'))!r}"
        return f"{a.get('kind')} marker (seq {a.get('seq')})"
    if ev.type == EventType.CHILD_WORKFLOW_STARTED:
        return f"child workflow {a.get('workflow_type')!r} (seq {a.get('seq')})"
    if ev.type == EventType.UPDATE_COMPLETED:
        return f"the end of update {a.get('update_id')!r}"
    if ev.type == EventType.SEARCH_ATTRIBUTES_UPSERTED:
        return f"an upsert of search attributes {a.get('attributes')!r:.120} (seq {a.get('seq')})"
    return ev.type


def matches(cmd: Command, ev: Event) -> bool:
    """Whether recorded event `ev` is what `cmd` records. Inputs are not compared, as in Temporal:
    the same call with other arguments is a change of data, not of control flow."""
    a = ev.attrs
    if isinstance(cmd, ScheduleActivity):
        return ev.type == EventType.ACTIVITY_SCHEDULED and a.get("seq") == cmd.seq and a.get("name") == cmd.name
    if isinstance(cmd, StartTimer):
        return ev.type == EventType.TIMER_STARTED and a.get("seq") == cmd.seq
    if isinstance(cmd, RecordMarker):
        if ev.type != EventType.MARKER_RECORDED or a.get("seq") != cmd.seq or a.get("kind") != cmd.kind:
            return False
        return cmd.kind != PATCH or patch_id(a.get("value")) == patch_id(cmd.value)
    if isinstance(cmd, StartChildWorkflow):
        return (ev.type == EventType.CHILD_WORKFLOW_STARTED and a.get("seq") == cmd.seq
                and a.get("workflow_type") == cmd.workflow_type)
    if isinstance(cmd, CompleteUpdate):
        return ev.type == EventType.UPDATE_COMPLETED and a.get("update_id") == cmd.update_id
    if isinstance(cmd, UpsertSearchAttributes):
        return (ev.type == EventType.SEARCH_ATTRIBUTES_UPSERTED and a.get("seq") == cmd.seq
                and a.get("attributes") == cmd.attributes)
    return to_event(cmd, 0, 0.0).type == ev.type
