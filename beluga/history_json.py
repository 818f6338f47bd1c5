"""Histories as JSON files: what `beluga export` writes and `beluga replay` / `beluga.testing` read.

A document is `{"workflow_type", "workflow_id", "run_id", "status", "events": [...]}`, each event
`{"id", "type", "timestamp", "attrs"}` (the layout of `tests/fixtures/histories/`). Values JSON has no
type for are tagged, so that a replay sees exactly what the run saw (the workflow's code branches on
them): `{"$tuple": [...]}`, `{"$bytes": "<base64>"}`, and anything else Beluga's codec carries (sets,
datetimes, UUIDs, decimals, dataclasses, dicts whose keys are not plain strings) as
`{"$msgpack": "<base64 of its msgpack encoding>"}`. Plain JSON values stay as they are, so hand-written
or older files need no tags.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beluga import codec
from beluga.core.errors import SerializationError, WorkflowError
from beluga.core.records import Event, WorkflowState

__all__ = ["ExportedHistory", "HistoryFormatError", "dumps", "export", "from_jsonable", "load", "read",
           "to_jsonable"]

_TAGS = ("$tuple", "$bytes", "$msgpack")


class HistoryFormatError(WorkflowError):
    """A file or document that is not an exported history."""


@dataclass(frozen=True, slots=True)
class ExportedHistory:
    workflow_type: str
    workflow_id: str
    run_id: str
    events: tuple[Event, ...]
    source: str = ""          # where it was read from (a path), for messages
    status: str | None = None


# --- values ------------------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON data, tagged where JSON has no type for it; `from_jsonable` inverts it."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) is int or type(value) is float:
        return value
    if type(value) is list:
        return [to_jsonable(v) for v in value]
    if type(value) is dict and all(type(k) is str and not k.startswith("$") for k in value):
        return {k: to_jsonable(v) for k, v in value.items()}
    if type(value) is tuple:
        return {"$tuple": [to_jsonable(v) for v in value]}
    if type(value) is bytes:
        return {"$bytes": base64.b64encode(value).decode()}
    return {"$msgpack": base64.b64encode(codec.encode(value)).decode()}


def from_jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "$tuple" and isinstance(inner, list):
                return tuple(from_jsonable(v) for v in inner)
            if key == "$bytes" and isinstance(inner, str):
                return base64.b64decode(inner)
            if key == "$msgpack" and isinstance(inner, str):
                return codec.decode(base64.b64decode(inner))
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


# --- documents ---------------------------------------------------------------------------------------
def event_to_json(ev: Event) -> dict[str, Any]:
    return {"id": ev.id, "type": ev.type, "timestamp": ev.timestamp, "attrs": to_jsonable(ev.attrs)}


def export(state: WorkflowState) -> dict[str, Any]:
    """The JSON document of a run."""
    return {"workflow_type": state.workflow_type, "workflow_id": state.workflow_id, "run_id": state.run_id,
            "status": state.status.value, "events": [event_to_json(ev) for ev in state.history]}


def dumps(document: dict[str, Any]) -> str:
    """The document as text, one event per line (a diff of two exports shows which events differ)."""
    head = {k: v for k, v in document.items() if k != "events"}
    rows = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in document.get("events", []))
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "events": [\n' + rows + "\n]}\n"


def load(document: Any, source: str = "<document>") -> ExportedHistory:
    """An exported history from its parsed JSON; `HistoryFormatError` saying what is wrong otherwise."""
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise HistoryFormatError(f"{source}: not a Beluga history (expected an object with an \"events\" list)")
    events = []
    for i, raw in enumerate(document["events"], start=1):
        if not (isinstance(raw, dict) and isinstance(raw.get("type"), str) and isinstance(raw.get("attrs", {}), dict)
                and isinstance(raw.get("timestamp", 0), (int, float))):
            raise HistoryFormatError(f"{source}: event {i} is not an event "
                                     "(expected {\"id\", \"type\", \"timestamp\", \"attrs\"})")
        if raw.get("id") != i:
            raise HistoryFormatError(f"{source}: event {i} has id {raw.get('id')!r}; ids must run 1, 2, 3, ...")
        try:
            attrs = from_jsonable(raw.get("attrs", {}))
        except (SerializationError, ValueError, TypeError) as exc:
            raise HistoryFormatError(f"{source}: event {i}: a value cannot be decoded ({exc})") from None
        events.append(Event(i, raw["type"], float(raw.get("timestamp", 0.0)), attrs))
    if not events or events[0].type != "workflow_started":
        raise HistoryFormatError(f"{source}: a history begins with a workflow_started event")
    workflow_type = document.get("workflow_type") or events[0].attrs.get("workflow_type")
    if not isinstance(workflow_type, str) or not workflow_type:
        raise HistoryFormatError(f"{source}: no workflow_type")
    return ExportedHistory(workflow_type, str(document.get("workflow_id", "")), str(document.get("run_id", "")),
                           tuple(events), source, document.get("status"))


def read(path: str | Path) -> ExportedHistory:
    """One exported history file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryFormatError(f"{path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(f"{path}: not JSON ({exc})") from None
    return load(document, str(path))


def files(paths: Iterable[str | Path]) -> list[Path]:
    """The history files named: files as given, directories as the `*.json` files under them, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*.json") if f.is_file()))
        else:
            out.append(p)
    return out
