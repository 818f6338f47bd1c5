"""Search attributes and memo: the typed business keys a run is found by, and what filters them.

A search attribute is a name and one typed value: a keyword (`str`, matched whole), an `int` or a
`float` (one numeric kind: 10 equals 10.0), a `bool`, or a timezone-aware `datetime`. Anything else (a
nested dict, a list, a naive datetime, NaN) is refused where it is given, with `InvalidSearchAttribute`,
because a store must index it and a listing must compare it the same way in every backend.

A filter (`WorkflowFilter.where`) maps names to a value (equality) or a `Range` (bounds on a number or a
datetime). The decision, and why: a small typed mapping rather than Temporal's SQL-like string, so a
filter is checked when it is built (an unknown type or a range on a keyword fails at once, not as a
parse error later), needs no quoting of values, and means exactly the same to every store. The CLI reads
`name=value`, `name>=value`, ... into that mapping (`parse_where`). Conditions on different names all hold
(AND); there is no OR.

The memo is any payload the codec stores (a dict by convention): shown with the run, never indexed.

Pure: no store, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from beluga.core.errors import WorkflowError

KEYWORD, NUMBER, BOOL, DATETIME = "keyword", "number", "bool", "datetime"
MAX_ATTRIBUTES = 64
MAX_KEYWORD = 256
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")

Value = str | int | float | bool | datetime


class InvalidSearchAttribute(WorkflowError, ValueError):
    """A search attribute or filter that cannot be indexed or compared: a bad name, a value of a type no
    store indexes (a dict, a list, a naive datetime), or a range on a keyword. Refused where given."""


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds on a numeric or datetime attribute: `Range(gte=10, lt=100)`. At least one bound; all given
    bounds hold. A bound is an int, a float or an aware datetime (all of one kind)."""

    gte: Any = None
    gt: Any = None
    lte: Any = None
    lt: Any = None

    def bounds(self) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
        """(low, inclusive) and (high, inclusive) as sortable numbers, None where open."""
        low = (sortable(self.gt), False) if self.gt is not None else (
            (sortable(self.gte), True) if self.gte is not None else None)
        high = (sortable(self.lt), False) if self.lt is not None else (
            (sortable(self.lte), True) if self.lte is not None else None)
        return low, high

    @property
    def kind(self) -> str:
        return kind_of(next(b for b in (self.gte, self.gt, self.lte, self.lt) if b is not None))

    def holds(self, value: float) -> bool:
        low, high = self.bounds()
        return ((low is None or value > low[0] or (low[1] and value == low[0]))
                and (high is None or value < high[0] or (high[1] and value == high[0])))


def kind_of(value: Any) -> str:
    """The kind a value is indexed as; raises `InvalidSearchAttribute` for values no store indexes."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, str):
        if len(value) > MAX_KEYWORD:
            raise InvalidSearchAttribute(f"a keyword search attribute holds at most {MAX_KEYWORD} characters, "
                                         f"got {len(value)}")
        return KEYWORD
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise InvalidSearchAttribute(f"an int search attribute must lie within +-2**53 (stores index it as "
                                         f"a double), got {value}")
        return NUMBER
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSearchAttribute(f"a float search attribute must be finite, got {value!r}")
        return NUMBER
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidSearchAttribute(f"a datetime search attribute must be timezone-aware (it is compared "
                                         f"as an instant), got the naive {value.isoformat()}")
        return DATETIME
    raise InvalidSearchAttribute(f"a search attribute is a str (keyword), int, float, bool or aware datetime, "
                                 f"not {type(value).__name__}: {value!r:.80}")


def sortable(value: Any) -> float:
    """A number or datetime as the float a store sorts it by (a datetime: its epoch seconds)."""
    kind = kind_of(value)
    if kind == DATETIME:
        return value.timestamp()
    if kind == NUMBER:
        return float(value)
    raise InvalidSearchAttribute(f"a range bound is an int, a float or an aware datetime, not {value!r:.80}")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidSearchAttribute(f"a search attribute name is a letter or '_' then up to 63 letters, digits, "
                                     f"'_', '.' or '-'; got {name!r:.80}")
    return name


def check_attributes(attrs: Any, *, allow_unset: bool = False) -> dict[str, Any]:
    """A copy of `attrs` with every name and value checked. `allow_unset`: a None value (an upsert that
    removes the attribute) is allowed."""
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping):
        raise InvalidSearchAttribute(f"search attributes are a dict of name -> value, not {type(attrs).__name__}")
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        check_name(name)
        if value is None and allow_unset:
            out[name] = None
            continue
        try:
            kind_of(value)
        except InvalidSearchAttribute as exc:
            raise InvalidSearchAttribute(f"search attribute {name!r}: {exc}") from None
        out[name] = value
    if len(out) > MAX_ATTRIBUTES:
        raise InvalidSearchAttribute(f"a run holds at most {MAX_ATTRIBUTES} search attributes, got {len(out)}")
    return out


def merged(current: Mapping[str, Any] | None, upsert: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes after an upsert: its values replace, its None values remove."""
    out = dict(current or {})
    for name, value in upsert.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    if len(out) > MAX_ATTRIBUTES:
        raise InvalidSearchAttribute(f"a run holds at most {MAX_ATTRIBUTES} search attributes, got {len(out)}")
    return out


def check_where(where: Any) -> dict[str, Any] | None:
    """A filter's conditions checked: name -> value (equality) or `Range`; None or {} for none."""
    if not where:
        return None
    if not isinstance(where, Mapping):
        raise InvalidSearchAttribute(f"where is a dict of name -> value or Range, not {type(where).__name__}")
    out: dict[str, Any] = {}
    for name, cond in where.items():
        check_name(name)
        if isinstance(cond, Range):
            given = [b for b in (cond.gte, cond.gt, cond.lte, cond.lt) if b is not None]
            if not given:
                raise InvalidSearchAttribute(f"where {name!r}: a Range needs at least one bound")
            kinds = {kind_of(b) for b in given}
            if len(kinds) > 1 or kinds & {KEYWORD, BOOL}:
                raise InvalidSearchAttribute(f"where {name!r}: a Range bounds ints/floats or aware datetimes "
                                             f"(one kind), got {given!r:.120}")
        else:
            try:
                kind_of(cond)
            except InvalidSearchAttribute as exc:
                raise InvalidSearchAttribute(f"where {name!r}: {exc}") from None
        out[name] = cond
    return out


def condition_holds(cond: Any, value: Any) -> bool:
    """Whether an attribute's `value` (None: the run lacks it) meets one condition of a filter."""
    if value is None:
        return False
    try:
        vkind = kind_of(value)
    except InvalidSearchAttribute:
        return False
    if isinstance(cond, Range):
        return vkind == cond.kind and cond.holds(sortable(value))
    if vkind != kind_of(cond):
        return False
    if vkind in (NUMBER, DATETIME):
        return sortable(value) == sortable(cond)
    return bool(value == cond)


def where_holds(where: Mapping[str, Any] | None, attrs: Mapping[str, Any] | None) -> bool:
    """Whether a run's attributes meet every condition of `where`."""
    if not where:
        return True
    attrs = attrs or {}
    return all(condition_holds(cond, attrs.get(name)) for name, cond in where.items())


def index_entries(attrs: Mapping[str, Any] | None) -> list[tuple[str, str, Any]]:
    """(name, kind, indexed value) of each attribute, as stores index them: keywords as text, bools as
    0/1, numbers and datetimes as floats (`sortable`)."""
    out = []
    for name, value in sorted((attrs or {}).items()):
        kind = kind_of(value)
        if kind == KEYWORD:
            out.append((name, kind, value))
        elif kind == BOOL:
            out.append((name, kind, int(value)))
        else:
            out.append((name, kind, sortable(value)))
    return out


# --- the CLI's `--where` -------------------------------------------------------------------------------
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")
_OPS = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt"}


def parse_value(text: str) -> Any:
    """A CLI value: "quoted" is a keyword; true/false a bool; an int or float literal a number; an ISO 8601
    date or time a datetime (UTC unless it gives an offset or Z); anything else a keyword."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for conv in (int, float):
        try:
            value = conv(text)
        except ValueError:
            continue
        if conv is int or math.isfinite(value):
            return value
    if re.match(r"^\d{4}-\d{2}-\d{2}([T ]|$)", text):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return text


def parse_where(conditions: list[str]) -> dict[str, Any]:
    """`["customer=c-42", "amount>=10", "amount<100"]` -> `{"customer": "c-42", "amount": Range(gte=10, lt=100)}`.
    Bounds on one name join into one Range; a datetime without an offset is read as UTC."""
    out: dict[str, Any] = {}
    for text in conditions:
        m = _CONDITION.match(text)
        if m is None:
            raise InvalidSearchAttribute(f"cannot read condition {text!r}: write name=value, or name>=value "
                                         "(also >, <=, <)")
        name, op, raw = m.groups()
        value = parse_value(raw)
        if op in ("=", "=="):
            if name in out:
                raise InvalidSearchAttribute(f"condition {text!r}: {name!r} is constrained twice")
            out[name] = value
            continue
        if op == "!=":
            raise InvalidSearchAttribute(f"condition {text!r}: != is not supported (filters are equalities and ranges)")
        prev = out.get(name)
        if prev is not None and not isinstance(prev, Range):
            raise InvalidSearchAttribute(f"condition {text!r}: {name!r} is constrained twice")
        bounds = {} if prev is None else {k: getattr(prev, k) for k in ("gte", "gt", "lte", "lt")}
        bounds[_OPS[op]] = value
        out[name] = Range(**bounds)
    result = check_where(out)
    return result or {}
