"""The one place where anything persisted or sent between processes is encoded and decoded.

msgpack, never pickle: data read from a store or a broker must not be able to run code. Types msgpack
lacks travel as ext types (codes below; they are part of the persisted format, never renumber them).
A dataclass is rebuilt only from a class its module already defines in this process; nothing named by
the data is ever imported. An aware datetime keeps its UTC offset, not its zone rules: a ZoneInfo comes
back as the fixed offset it had at that instant (the instant itself is exact).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import sys
import threading
import uuid
from decimal import Decimal
from typing import Any

import msgpack

from beluga.core.errors import SerializationError
from beluga.core.records import SCHEMA_VERSION, Event, WorkflowState, WorkflowStatus

__all__ = ["encode", "decode", "check", "encode_event", "decode_event", "encode_state", "decode_state",
           "MAX_NESTING"]

EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_BIGINT = 4
EXT_DATETIME = 5
EXT_DATE = 6
EXT_TIME = 7
EXT_TIMEDELTA = 8
EXT_UUID = 9
EXT_DECIMAL = 10
EXT_DATACLASS = 11

_MAX_DEPTH = 256  # below msgpack's own nesting limit, so a cycle is reported as one
# How deeply a payload (an input, a signal payload, a result, a query argument) may nest lists, dicts,
# tuples, sets and dataclasses: checked at the call (`check`), like protobuf's default recursion limit.
# Deeper values are refused there rather than failing a worker's replay with RecursionError.
MAX_NESTING = 100


def _packb(value: Any) -> bytes:
    # Ext payloads are packed by a fresh packer: the thread's shared one is mid-`pack` when `_default` runs.
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True, datetime=False)


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    # Sorted when possible, so equal sets encode to equal bytes across processes (hash seeds differ).
    try:
        return sorted(items)
    except TypeError:
        return list(items)


_DC_FIELDS: dict[type, tuple[str, tuple[str, ...]]] = {}


def _dataclass(obj: Any) -> msgpack.ExtType:
    cls = type(obj)
    spec = _DC_FIELDS.get(cls)
    if spec is None:
        spec = _DC_FIELDS[cls] = (f"{cls.__module__}:{cls.__qualname__}",
                                  tuple(f.name for f in dataclasses.fields(cls)))
    name, names = spec
    return msgpack.ExtType(EXT_DATACLASS, _packb([name, {n: getattr(obj, n) for n in names}]))


def _bigint(n: int) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_BIGINT, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


_EXACT: dict[type, Any] = {
    tuple: lambda o: msgpack.ExtType(EXT_TUPLE, _packb(list(o))),
    set: lambda o: msgpack.ExtType(EXT_SET, _packb(_ordered(o))),
    frozenset: lambda o: msgpack.ExtType(EXT_FROZENSET, _packb(_ordered(o))),
    int: _bigint,  # msgpack calls `default` only for ints outside 64 bits
    dt.datetime: lambda o: msgpack.ExtType(EXT_DATETIME, o.isoformat().encode()),
    dt.date: lambda o: msgpack.ExtType(EXT_DATE, o.isoformat().encode()),
    dt.time: lambda o: msgpack.ExtType(EXT_TIME, o.isoformat().encode()),
    dt.timedelta: lambda o: msgpack.ExtType(EXT_TIMEDELTA, _packb([o.days, o.seconds, o.microseconds])),
    uuid.UUID: lambda o: msgpack.ExtType(EXT_UUID, o.bytes),
    Decimal: lambda o: msgpack.ExtType(EXT_DECIMAL, str(o).encode()),
}
# Subclasses of the types above (or of msgpack's own) travel as their base type; order matters
# (datetime before date, bool cannot be subclassed).
_BASES: tuple[tuple[type, Any], ...] = (
    (str, str), (int, int), (float, float), (bytes, bytes), (memoryview, bytes), (dict, dict),
    (list, list), (tuple, _EXACT[tuple]), (frozenset, _EXACT[frozenset]), (set, _EXACT[set]),
    (dt.datetime, _EXACT[dt.datetime]), (dt.date, _EXACT[dt.date]), (dt.time, _EXACT[dt.time]),
    (dt.timedelta, _EXACT[dt.timedelta]), (uuid.UUID, _EXACT[uuid.UUID]), (Decimal, _EXACT[Decimal]),
)


def _default(obj: Any) -> Any:
    enc = _EXACT.get(type(obj))
    if enc is not None:
        return enc(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dataclass(obj)
    for base, conv in _BASES:
        if isinstance(obj, base):
            return conv(obj)
    raise TypeError(f"cannot encode {type(obj).__qualname__}")


def _rebuild(name: Any, values: Any) -> Any:
    if not isinstance(name, str) or not isinstance(values, dict):
        raise SerializationError("malformed dataclass record")
    module, _, qualname = name.partition(":")
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        # __dict__, not getattr: a module-level __getattr__ could import something the data names.
        target = getattr(target, "__dict__", {}).get(part)
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        return values
    try:
        fields = {f.name: f for f in dataclasses.fields(target)}
        unknown = [k for k in values if k not in fields]
        if unknown:
            raise TypeError(f"the class has no fields {unknown}")
        obj = target(**{k: v for k, v in values.items() if fields[k].init})
        for k, v in values.items():
            if not fields[k].init:  # restored as recorded, as the constructor would not take it
                object.__setattr__(obj, k, v)
    except Exception as exc:
        raise SerializationError(
            f"recorded fields {list(values)} no longer fit dataclass {name} ({exc}); keep the class "
            "compatible with recorded data, or give new fields defaults") from exc
    return obj


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == EXT_SET:
        return set(_unpackb(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpackb(data))
    if code == EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == EXT_TIME:
        return dt.time.fromisoformat(data.decode())
    if code == EXT_TIMEDELTA:
        return dt.timedelta(*_unpackb(data))
    if code == EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == EXT_DECIMAL:
        return Decimal(data.decode())
    if code == EXT_DATACLASS:
        return _rebuild(*_unpackb(data))
    raise SerializationError(f"unknown ext type {code}; was this written by a newer Beluga?")


_local = threading.local()


def _packer() -> msgpack.Packer:
    # One packer per thread: msgpack's Packer reuses its buffer and is not thread-safe.
    packer = _local.packer = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True,
                                            datetime=False)
    return packer


def _children(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out.append((f"[<key {k!r}>]", k))
            out.append((f"[{k!r}]", v))
        return out
    if isinstance(value, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [(f"[<element {v!r}>]", v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f".{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value)]
    return []


def _locate(value: Any, path: str, depth: int = 0) -> str | None:
    """Where encoding fails, searched only after it did: the fast path keeps no path."""
    if depth > _MAX_DEPTH:
        return f"a value nested more than {_MAX_DEPTH} levels deep (a cycle?) at {path[:80]}..."
    children = _children(value)
    if not children:
        try:
            _packb(value)
        except Exception:
            return f"a {type(value).__module__}.{type(value).__qualname__} at {path}"
        return None
    for suffix, child in children:
        found = _locate(child, path + suffix, depth + 1)
        if found is not None:
            return found
    return None


def _failure(exc: Exception, parts: list[tuple[str, Any]]) -> SerializationError:
    for label, value in parts:
        found = _locate(value, label)
        if found is not None:
            return SerializationError(
                f"cannot encode {found}. Pass plain data (None, bool, int, float, str, bytes, "
                "list, dict, tuple, set, datetime, Decimal, UUID, enums, dataclasses of these), or "
                "convert it first")
    return SerializationError(f"cannot encode value: {exc!r}")


def _pack(value: Any) -> bytes:
    try:
        packer = _local.packer
    except AttributeError:
        packer = _packer()
    return packer.pack(value)


def encode(value: Any, *, label: str = "value") -> bytes:
    """`label` names the value in error messages: `input` gives paths like `input['items'][2]`."""
    try:
        return _pack(value)
    except Exception as exc:
        raise _failure(exc, [(label, value)]) from exc


def check(value: Any, *, label: str = "value") -> bytes:
    """What a call accepts, every process can read: `value` encoded, after proving that it decodes again.
    Refuses (`SerializationError`, naming where) what the codec would not produce itself: raw
    `msgpack.ExtType` and `msgpack.Timestamp` values (a worker cannot read an ext type it does not know),
    nesting deeper than `MAX_NESTING`, anything that does not encode, and anything whose encoding would
    not decode. For the values a caller hands over (run inputs, signal payloads, results, query
    arguments); what Beluga writes itself needs only `encode`."""
    if type(value) in _PLAIN:  # a scalar: nothing foreign in it, and what encodes decodes again
        return encode(value, label=label)
    problem = _foreign(value)
    if problem is not None:
        where = _locate_foreign(value, label, 1)
        raise SerializationError(f"cannot accept {where or label}: {problem}")
    data = encode(value, label=label)
    try:
        decode(data)
    except SerializationError as exc:
        raise SerializationError(f"{label} would not decode again ({exc}); pass plain data") from None
    return data


_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
_RAW_MSGPACK = (msgpack.ExtType, msgpack.Timestamp)


def _members(obj: Any) -> Any:
    """What the encoder descends into (None for a leaf): a container's items, a dataclass's fields, an
    enum's value."""
    if isinstance(obj, dict):
        return [x for kv in obj.items() for x in kv]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    if isinstance(obj, enum.Enum):
        return (obj.value,)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    return None


def _foreign(value: Any) -> str | None:
    """Why `value` is not a payload the codec produces (None when it is), without building paths: one
    pass over the value, with no recursion (a deep value is the point)."""
    stack = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if type(obj) in _PLAIN:
            continue
        if isinstance(obj, _RAW_MSGPACK):
            return (f"a raw {type(obj).__module__}.{type(obj).__qualname__} is msgpack's own encoding, which "
                    "workers may not read (unknown ext types); pass the value itself")
        members = _members(obj)
        if members is None:
            continue
        if depth > MAX_NESTING:
            return (f"nested more than {MAX_NESTING} levels deep (beluga.codec.MAX_NESTING); flatten it, or "
                    "store it elsewhere and pass a reference")
        stack.extend((m, depth + 1) for m in members)
    return None


def _locate_foreign(value: Any, path: str, depth: int) -> str | None:
    """The path to what `_foreign` refused (searched only after it did), cut short past a few levels."""
    if isinstance(value, _RAW_MSGPACK):
        return path
    if _members(value) is None:
        return None
    if depth > MAX_NESTING:
        return f"{path[:60]}... (level {depth})"
    for suffix, child in _children(value) if not isinstance(value, enum.Enum) else [(".value", value.value)]:
        found = _locate_foreign(child, path + suffix, depth + 1)
        if found is not None:
            return found
    return None


def decode(data: bytes) -> Any:
    """The inverse of `encode`. Any malformed input raises `SerializationError`, never anything else."""
    try:
        return _unpackb(data)
    except SerializationError:
        raise
    except Exception as exc:
        size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else type(data).__name__
        raise SerializationError(f"cannot decode {size} bytes: {exc!r}") from exc


def _record(data: bytes, what: str) -> dict[str, Any]:
    d = decode(data)
    if not isinstance(d, dict):
        raise SerializationError(f"{what} record is a {type(d).__name__}, not a map")
    if d.get("v") != SCHEMA_VERSION:
        raise SerializationError(
            f"{what} record has schema version {d.get('v')!r}, this Beluga reads {SCHEMA_VERSION}; "
            "upgrade Beluga to read it")
    return d


def encode_event(ev: Event) -> bytes:
    try:
        return _pack({"v": SCHEMA_VERSION, "id": ev.id, "type": ev.type, "ts": ev.timestamp,
                      "attrs": ev.attrs})
    except Exception as exc:
        raise _failure(exc, [(f"event {ev.id} ({ev.type}) attrs", ev.attrs)]) from exc


def decode_event(data: bytes) -> Event:
    d = _record(data, "event")
    try:
        ev_id, ev_type, ts, attrs = d["id"], d["type"], d["ts"], d["attrs"]
    except KeyError as exc:
        raise SerializationError(f"event record lacks {exc}") from exc
    if not (type(ev_id) is int and type(ev_type) is str and type(ts) in (float, int)
            and type(attrs) is dict):
        raise SerializationError(f"event record has fields of the wrong types: {d!r:.200}")
    return Event(ev_id, ev_type, ts, attrs)


_STATE_FIELDS = ("workflow_id", "run_id", "workflow_type", "input", "result", "error", "created_at",
                 "updated_at", "queue", "parent")


def encode_state(state: WorkflowState) -> bytes:
    """The summary only: stores keep the history as separate event records."""
    d: dict[str, Any] = {"v": SCHEMA_VERSION, "status": WorkflowStatus(state.status).value}
    for name in _STATE_FIELDS:
        d[name] = getattr(state, name)
    if state.search_attributes:  # written only when set: older summaries lack them, and read the same
        d["search_attributes"] = state.search_attributes
    if state.memo is not None:
        d["memo"] = state.memo
    try:
        return _pack(d)
    except Exception as exc:
        raise _failure(exc, [(name, getattr(state, name)) for name in _STATE_FIELDS]) from exc


def decode_state(data: bytes, history: tuple[Event, ...] = ()) -> WorkflowState:
    d = _record(data, "workflow state")
    try:
        kwargs = {name: d[name] for name in _STATE_FIELDS}
        status = WorkflowStatus(d["status"])
    except (KeyError, ValueError) as exc:
        raise SerializationError(f"workflow state record is malformed: {exc!r}") from exc
    if not all(type(kwargs[k]) is str for k in ("workflow_id", "run_id", "workflow_type")):
        raise SerializationError(f"workflow state record has ids of the wrong types: {d!r:.200}")
    attributes = d.get("search_attributes") or {}
    if not isinstance(attributes, dict):
        raise SerializationError(f"workflow state record has search attributes of the wrong type: {d!r:.200}")
    return WorkflowState(status=status, history=history, search_attributes=attributes, memo=d.get("memo"), **kwargs)
