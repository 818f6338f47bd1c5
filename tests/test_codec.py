"""The codec: what round-trips exactly, and that everything else fails as `SerializationError`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import socket
import sys
import threading
import uuid
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from beluga import codec
from beluga.core.errors import SerializationError
from beluga.core.records import SCHEMA_VERSION, Event, WorkflowState, WorkflowStatus


@dataclasses.dataclass
class Point:
    x: int
    y: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    name: str
    tags: tuple[str, ...] = ()
    cached: int = dataclasses.field(default=0, init=False)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


PLUS_2 = dt.timezone(dt.timedelta(hours=2))
ODD = dt.timezone(dt.timedelta(hours=-3, minutes=-30, seconds=-15, microseconds=-7))

ROUND_TRIPS = {
    "none": None, "true": True, "false": False, "zero": 0, "neg": -1,
    "int64_max": 2**63 - 1, "int64_min": -(2**63), "uint64_max": 2**64 - 1,
    "above_uint64": 2**64, "below_int64": -(2**63) - 1, "huge": 10**100, "huge_neg": -(10**100),
    "float": 1.5, "inf": math.inf, "str": "héllo ✓", "empty_str": "", "bytes": b"\x00\xff",
    "list": [1, [2, "3"]], "dict": {"a": {"b": [1]}}, "int_keys": {1: "a", -2: "b"},
    "none_key": {None: 1}, "tuple_key": {(1, "a"): 2}, "frozenset_key": {frozenset({1}): 2},
    "empty_tuple": (), "tuple": (1, (2, 3), [4, (5,)]), "tuples_in_list": [(1, 2), (3,)],
    "set": {1, 2, 3}, "empty_set": set(), "frozenset": frozenset({"a", "b"}), "mixed_set": {1, "a", None},
    "datetime_naive": dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    "datetime_utc": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    "datetime_offset": dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=PLUS_2),
    "datetime_odd_offset": dt.datetime(1, 1, 2, tzinfo=ODD),
    "date": dt.date(1999, 12, 31), "time": dt.time(1, 2, 3, 4), "time_tz": dt.time(1, 2, tzinfo=PLUS_2),
    "timedelta": dt.timedelta(days=-1, seconds=5, microseconds=7), "uuid": uuid.UUID(int=12345),
    "decimal": Decimal("1.10"), "decimal_exp": Decimal("-1E+30"), "decimal_neg_zero": Decimal("-0.000"),
    "decimal_inf": Decimal("Infinity"), "dataclass": Point(1, {"a": (1, 2)}),
    "nested_dataclass": Point(Point(2), [Frozen("f", ("a",))]),
    "event": Event(3, "activity_completed", 1.25, {"result": [1]}),
    "everything": {"when": dt.datetime(2020, 5, 5, tzinfo=PLUS_2), "ids": (uuid.UUID(int=1),),
                   "amounts": [Decimal("0.1")], "points": {Point(1, 2).x: Point(3)}},
}


def same(a: Any, b: Any) -> bool:
    """Equal, and equal in type all the way down (1 == 1.0 == True, but not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset()
    if isinstance(a, Decimal):
        return str(a) == str(b)  # Decimal('-0.000') == Decimal('0'), but not as text
    return a == b


@pytest.mark.parametrize("value", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_round_trip(value: Any) -> None:
    assert same(codec.decode(codec.encode(value)), value)


def test_zoned_datetime_keeps_its_instant_and_offset() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = dt.datetime(2024, 7, 1, 12, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    back = codec.decode(codec.encode(paris))
    assert back == paris and back.utcoffset() == dt.timedelta(hours=2)


def test_utc_stays_utc() -> None:
    back = codec.decode(codec.encode(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)))
    assert back.tzinfo is dt.timezone.utc


@pytest.mark.parametrize("value, expected", [
    (Color.RED, "red"), (Level.HIGH, 3), (WorkflowStatus.FAILED, "failed"),
    ({"c": [Color.RED]}, {"c": ["red"]}), (bytearray(b"ab"), b"ab"), (memoryview(b"ab"), b"ab"),
])
def test_enums_and_buffers_travel_as_plain_values(value: Any, expected: Any) -> None:
    assert same(codec.decode(codec.encode(value)), expected)


def test_dataclass_init_false_field_is_restored() -> None:
    f = Frozen("x")
    object.__setattr__(f, "cached", 9)
    assert codec.decode(codec.encode(f)).cached == 9


def test_set_encoding_is_deterministic() -> None:
    assert codec.encode({"b", "a", "c"}) == codec.encode({"c", "b", "a"})


def _dataclass_record(name: str, fields: dict[str, Any]) -> bytes:
    payload = msgpack.packb([name, fields])
    return msgpack.packb(msgpack.ExtType(codec.EXT_DATACLASS, payload))


@pytest.mark.parametrize("name", [
    "this:Zen",  # a stdlib module that prints on import: must stay unimported
    "beluga_no_such_module:Thing",
    "beluga.stores:RedisStore",  # reachable only through the module's lazy __getattr__
    "collections:OrderedDict",  # exists, but is not a dataclass
    f"{__name__}:Point.missing", f"{__name__}:same",
])
def test_dataclass_from_unknown_class_decodes_to_dict_without_importing(name: str) -> None:
    loaded = set(sys.modules)
    assert codec.decode(_dataclass_record(name, {"x": 1})) == {"x": 1}
    assert set(sys.modules) - loaded == set()


def test_dataclass_that_no_longer_fits_raises() -> None:
    with pytest.raises(SerializationError, match="no longer fit"):
        codec.decode(_dataclass_record(f"{__name__}:Point", {"x": 1, "z": 2}))


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x92\x01", b"\x01\x02", b"\xff" * 3, b"\x81\x91\x01\x02",  # list as map key
    b"\xdd\xff\xff\xff\xff", b"\xc7\x00\x63",  # huge array header; unknown ext code 99
    msgpack.packb(msgpack.ExtType(codec.EXT_TUPLE, b"\xc1")),
    msgpack.packb(msgpack.ExtType(codec.EXT_DATETIME, b"yesterday")),
    msgpack.packb(msgpack.ExtType(codec.EXT_UUID, b"short")),
    msgpack.packb(msgpack.ExtType(codec.EXT_DATACLASS, msgpack.packb([1, 2]))),
    msgpack.packb(msgpack.ExtType(codec.EXT_SET, msgpack.packb([[1]]))),
    "not bytes", None,
])
def test_garbage_raises_serialization_error(data: Any) -> None:
    with pytest.raises(SerializationError):
        codec.decode(data)


@pytest.mark.parametrize("value, where", [
    ({"items": [1, 2, lambda: 0]}, "input['items'][2]"),
    ({"items": [1, 2, object()]}, "input['items'][2]"),
    ({"k": (1, {2: socket.socket})}, "input['k'][1][2]"),
    ([Point(1, object())], "input[0].y"),
    ({"s": {1, 2, threading.Lock()}}, "input['s'][<element"),
    ({object(): 1}, "input[<key <object object"),
])
def test_unencodable_value_names_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(SerializationError) as info:
        codec.encode(value, label="input")
    assert where in str(info.value)


def test_unencodable_socket_names_its_type() -> None:
    with socket.socket() as s, pytest.raises(SerializationError, match=r"socket at value\['conn'\]"):
        codec.encode({"conn": s})


def test_cycle_raises() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="cycle"):
        codec.encode(loop)


def test_event_round_trip_and_path_in_errors() -> None:
    ev = Event(4, "activity_completed", 12.5, {"result": (1, Decimal("2"))})
    assert codec.decode_event(codec.encode_event(ev)) == ev
    with pytest.raises(SerializationError, match=r"event 4 \(x\) attrs\['f'\]"):
        codec.encode_event(Event(4, "x", 0.0, {"f": print}))


@pytest.mark.parametrize("record", [
    {"v": SCHEMA_VERSION + 1, "id": 1, "type": "x", "ts": 0.0, "attrs": {}},
    {"id": 1, "type": "x", "ts": 0.0, "attrs": {}},
    {"v": SCHEMA_VERSION, "id": 1, "type": "x", "ts": 0.0},
    {"v": SCHEMA_VERSION, "id": "1", "type": "x", "ts": 0.0, "attrs": {}},
    [SCHEMA_VERSION, 1, "x"],
])
def test_bad_event_records_raise(record: Any) -> None:
    with pytest.raises(SerializationError):
        codec.decode_event(codec.encode(record))


def test_unknown_schema_version_says_so() -> None:
    data = codec.encode({"v": 99, "id": 1, "type": "x", "ts": 0.0, "attrs": {}})
    with pytest.raises(SerializationError, match="schema version 99"):
        codec.decode_event(data)


def test_state_round_trip_leaves_out_history() -> None:
    state = WorkflowState("wf", "r", "order", status=WorkflowStatus.COMPLETED, input={"a": (1,)},
                          result=[Decimal("1")], error=None, created_at=1.0, updated_at=2.0,
                          history=(Event(1, "workflow_started", 0.0, {}),), queue="q",
                          parent={"workflow_id": "p", "run_id": "pr", "seq": 1})
    back = codec.decode_state(codec.encode_state(state))
    assert back == dataclasses.replace(state, history=())
    assert back.status is WorkflowStatus.COMPLETED
    assert codec.decode_state(codec.encode_state(state), state.history) == state


@pytest.mark.parametrize("change", [{"v": 0}, {"status": "exploded"}, {"run_id": None, "workflow_id": None},
                                    {"workflow_type": 3}])
def test_bad_state_records_raise(change: dict[str, Any]) -> None:
    record = codec.decode(codec.encode_state(WorkflowState("wf", "r", "t")))
    record.update(change)
    for key in [k for k, v in change.items() if v is None]:
        del record[key]
    with pytest.raises(SerializationError):
        codec.decode_state(codec.encode(record))


def test_encode_is_safe_across_threads() -> None:
    values = [{"t": t, "items": list(range(t)), "when": dt.date(2024, 1, t + 1)} for t in range(8)]
    expected = [codec.encode(v) for v in values]
    errors: list[str] = []

    def hammer(t: int) -> None:
        for _ in range(2000):
            if codec.encode(values[t]) != expected[t]:
                errors.append(f"thread {t}")
                return

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- codec.check: what a call accepts, every process can read ----------------------------------------
def _nested(levels: int, leaf: Any = 1) -> Any:
    for i in range(levels):
        leaf = [leaf] if i % 3 == 0 else {"k": leaf} if i % 3 == 1 else (leaf,)
    return leaf


@pytest.mark.parametrize("value", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_check_accepts_what_round_trips(value: Any) -> None:
    assert same(codec.decode(codec.check(value)), value)


def test_check_accepts_nan_and_tuple_keys() -> None:
    value = {"nan": math.nan, (1, ("a", None)): [math.nan], frozenset({(1, 2)}): -0.0}
    back = codec.decode(codec.check(value, label="input"))
    assert repr(back) == repr(value)


class Wrapped(enum.Enum):
    BAD = {"x": msgpack.ExtType(7, b"")}


@pytest.mark.parametrize(("value", "where"), [
    (msgpack.ExtType(42, b"x"), "input"),
    ({"a": [1, msgpack.ExtType(1, b"\xc1")]}, "input['a'][1]"),
    ({msgpack.ExtType(3, b""): 1}, "input[<key ExtType(code=3, data=b'')>]"),
    (Point(1, {"t": msgpack.Timestamp(5, 0)}), "input.y['t']"),
    ((1, {2, 3}, [msgpack.Timestamp(0, 1)]), "input[2][0]"),
    (Wrapped.BAD, "input.value['x']"),
], ids=["ext", "ext-nested", "ext-key", "timestamp-in-dataclass", "timestamp-in-tuple", "ext-in-enum"])
def test_check_refuses_raw_msgpack_values_and_names_where(value: Any, where: str) -> None:
    with pytest.raises(SerializationError, match="msgpack") as info:
        codec.check(value, label="input")
    assert f"cannot accept {where}:" in str(info.value)
    codec.encode(value)  # encode alone lets them through: a worker could then not read them back


def test_check_limits_nesting_to_the_documented_depth() -> None:
    assert codec.decode(codec.check(_nested(codec.MAX_NESTING))) == _nested(codec.MAX_NESTING)
    for value in (_nested(codec.MAX_NESTING + 1), _nested(600), Point(_nested(codec.MAX_NESTING))):
        with pytest.raises(SerializationError, match=f"nested more than {codec.MAX_NESTING} levels"):
            codec.check(value, label="input")
    # a wide value is not a deep one
    codec.check([[i] for i in range(10_000)])


def test_check_refuses_what_would_not_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything whose encoding this very process could not read back is refused at the call."""
    @dataclasses.dataclass(frozen=True)
    class Key:
        n: int

    monkeypatch.setattr(codec, "_rebuild", lambda name, values: values)  # as in a process without the class
    with pytest.raises(SerializationError, match="would not decode again"):
        codec.check({Key(1): "x"}, label="input")  # the key would come back as a dict: unhashable


def test_check_refuses_unencodable_values_as_encode_does() -> None:
    with pytest.raises(SerializationError, match="cannot encode a builtins.object at input\\['x'\\]"):
        codec.check({"x": object()}, label="input")
