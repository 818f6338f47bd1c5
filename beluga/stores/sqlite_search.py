"""The SQLite store's search-attribute index: one row per (run, attribute) in `attrs`, indexed by
(name, kind, value, created_at), written in the same transaction as the run's summary.

Values are stored as `beluga.core.search.index_entries` gives them: keywords as TEXT, bools as 0/1,
numbers and datetimes as REAL (epoch seconds); `kind` keeps a keyword "10" apart from the number 10
and a bool from 1. A filter's condition becomes `workflow_id IN (SELECT ... FROM attrs WHERE ...)`,
so it combines with the status, type and cursor conditions of the listing's one keyset query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from beluga.core.search import BOOL, KEYWORD, Range, index_entries, kind_of, sortable

SCHEMA = """
CREATE TABLE IF NOT EXISTS attrs (
    workflow_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, value NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (workflow_id, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attrs_by_value ON attrs (name, kind, value, created_at);
"""


def write(conn: sqlite3.Connection, workflow_id: str, attributes: Mapping[str, Any] | None, created_at: float,
          *, fresh: bool = False) -> None:
    """Index the run's whole set of attributes in place of what it had (`fresh`: it had none)."""
    if not fresh:
        conn.execute("DELETE FROM attrs WHERE workflow_id = ?", (workflow_id,))
    rows = [(workflow_id, name, kind, value, created_at) for name, kind, value in index_entries(attributes)]
    if rows:
        conn.executemany("INSERT INTO attrs (workflow_id, name, kind, value, created_at) VALUES (?, ?, ?, ?, ?)",
                         rows)


def forget(conn: sqlite3.Connection, workflow_id: str) -> None:
    conn.execute("DELETE FROM attrs WHERE workflow_id = ?", (workflow_id,))


def conditions(where: Mapping[str, Any] | None) -> tuple[list[str], list[object]]:
    """The SQL conditions (on `runs`) of a filter's `where`, and their parameters."""
    sql: list[str] = []
    params: list[object] = []
    for name, cond in (where or {}).items():
        if isinstance(cond, Range):
            kind = cond.kind
            parts = ["name = ?", "kind = ?"]
            args: list[object] = [name, kind]
            for bound, op in ((cond.gte, ">="), (cond.gt, ">"), (cond.lte, "<="), (cond.lt, "<")):
                if bound is not None:
                    parts.append(f"value {op} ?")
                    args.append(sortable(bound))
        else:
            kind = kind_of(cond)
            value = cond if kind == KEYWORD else int(cond) if kind == BOOL else sortable(cond)
            parts, args = ["name = ?", "kind = ?", "value = ?"], [name, kind, value]
        sql.append("workflow_id IN (SELECT workflow_id FROM attrs WHERE " + " AND ".join(parts) + ")")
        params.extend(args)
    return sql, params
