"""The Redis store's search-attribute indexes (written by beluga/lua/lib/attrs.lua in the very script that
creates the run or records its upsert), and how a listing with `where` picks the index it reads.

Per shard, under its listing prefix `<t>:index:`:
  `sa:<name>:keyword=<value>`, `sa:<name>:bool=<0|1>`  the runs with that value, scored by creation time:
                                                       pageable exactly as the status and type indexes;
  `sa:<name>:number`, `sa:<name>:datetime`             every run with the attribute, scored by its value
                                                       (a datetime's epoch seconds): read by range.
A listing reads one of them (an equality on a keyword or bool when there is one, the most selective kind,
else the first number or datetime condition); the runs' summaries then decide every other condition
(beluga/stores/redis_listing.py), as they do for status and type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from beluga.core.search import BOOL, KEYWORD, Range, index_entries, kind_of, sortable


def suffix(name: str, kind: str, value: Any = None) -> str:
    """The index (after `<t>:index:`) of attribute `name`: of one value for keywords and bools."""
    if kind == KEYWORD:
        return f"sa:{name}:{kind}={value}"
    if kind == BOOL:
        return f"sa:{name}:{kind}={int(value)}"
    return f"sa:{name}:{kind}"


def entries(attrs: Mapping[str, Any] | None) -> str:
    """The run's index entries as lib/attrs.lua reads them: JSON [[suffix, score], ...], the score '' for
    "the run's creation time", or '' for no attributes."""
    out = []
    for name, kind, value in index_entries(attrs):
        if kind in (KEYWORD, BOOL):
            out.append([suffix(name, kind, value), ""])
        else:
            out.append([suffix(name, kind), repr(float(value))])
    return json.dumps(out) if out else ""


def suffixes(raw: bytes | str | None) -> list[str]:
    """The indexes a run hash's `sa` field says it is listed under."""
    if not raw:
        return []
    return list(json.loads(raw))


def driving(where: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """The index a listing with `where` reads: (suffix, None, None) for a keyword or bool equality, else
    (suffix, low, high) for a number or datetime condition, its bounds in ZRANGEBYSCORE's syntax."""
    for name, cond in where.items():
        if not isinstance(cond, Range) and kind_of(cond) in (KEYWORD, BOOL):
            return suffix(name, kind_of(cond), cond), None, None
    name, cond = next(iter(where.items()))
    if not isinstance(cond, Range):
        v = repr(sortable(cond))
        return suffix(name, kind_of(cond)), v, v
    low, high = cond.bounds()
    return (suffix(name, cond.kind),
            "-inf" if low is None else ("" if low[1] else "(") + repr(low[0]),
            "+inf" if high is None else ("" if high[1] else "(") + repr(high[0]))
