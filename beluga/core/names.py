"""What may name a run, a signal or a query: the one check every executor applies at the call.

A name reaches keys and records that join it with separators (the fleet's timer entries are
"<workflow id>\\0<message>"), so a NUL in a workflow id once delivered a run's timer to the run named by
the part before it. Control characters (Unicode category Cc: NUL, newlines, escapes, DEL, C1) are
refused, so no encoding is needed and ids with colons, spaces or any other printable text still work.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from beluga.core.errors import InvalidName


def check_name(value: Any, what: str) -> str:
    """`value` if it may name a `what` ("workflow id", "signal name", "query name"), else `InvalidName`
    saying why."""
    if not isinstance(value, str):
        raise InvalidName(f"a {what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidName(f"a {what} must not be empty")
    if value.isprintable():  # the common case, in C; else look for what is refused
        return value
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc":
            raise InvalidName(f"{what} {value[:60]!r} holds the control character {ch!r} at position {i}; "
                              "ids and names may hold any printable text, but no control characters")
    return value
