"""The embedded durable default: one SQLite file in WAL mode, shared by threads and processes.

Each thread (and each process: a connection must not cross a fork, as under Celery's prefork pool)
gets its own connection, so readers never wait for the writer. Every write is one `BEGIN IMMEDIATE`
transaction: it takes the file's write lock up front, so the version check and the insert are atomic
across processes, and a batch of appends for many runs costs a single commit (the group commit the
engine relies on).

`runs.status`, `runs.updated_at` and `runs.version` are authoritative over the copies inside the
summary blob, which is rewritten only when an append sets a result or an error.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from beluga.codec import decode_event, decode_state, encode_event, encode_state
from beluga.core.errors import ConfigurationError
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores import sqlite_search
from beluga.stores._common import (
    DEFAULT_FILTER,
    accepts,
    check_append,
    check_create,
    check_events,
    count_by_status,
    counting,
    id_matches,
    is_stuck,
    needs_summary,
    summarize,
)
from beluga.stores.base import WorkflowStore
from beluga.stores.schedule_store import ScheduleStore

STORE_SCHEMA = 1  # the layout of the tables; record formats are versioned by the codec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    workflow_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, workflow_type TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    version INTEGER NOT NULL, summary BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at);
CREATE INDEX IF NOT EXISTS runs_by_type ON runs (workflow_type, created_at);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS events (
    workflow_id TEXT NOT NULL, run_id TEXT NOT NULL, id INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (workflow_id, id)) WITHOUT ROWID;
""" + sqlite_search.SCHEMA
_RUN_COLUMNS = "run_id, workflow_type, status, created_at, updated_at, version, summary"
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = ?"
_UPSERT_RUN = ("INSERT OR REPLACE INTO runs (workflow_id, run_id, workflow_type, status, created_at, "
               "updated_at, version, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_EVENT = "INSERT INTO events (workflow_id, run_id, id, data) VALUES (?, ?, ?, ?)"
_SELECT_EVENTS = "SELECT data FROM events WHERE workflow_id = ? AND id > ? ORDER BY id"
# Status is indexed: only the appends that change it name it, so the others leave the index alone.
_BUMP = ("UPDATE runs SET version = ?, updated_at = coalesce(?, updated_at) "
         "WHERE workflow_id = ? AND run_id = ? AND version = ?")
_BUMP_STATUS = ("UPDATE runs SET version = ?, status = ?, updated_at = coalesce(?, updated_at) "
                "WHERE workflow_id = ? AND run_id = ? AND version = ?")
_REWRITE = "UPDATE runs SET version = ?, status = ?, updated_at = ?, summary = ? WHERE workflow_id = ?"


class SQLiteStore(WorkflowStore):
    def __init__(self, path: str | os.PathLike[str] = "beluga.db", *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            # Each thread has its own connection, so an in-memory database would be one per thread.
            raise ConfigurationError("SQLiteStore needs a file path; for a store in memory use InMemoryStore")
        self._timeout = timeout
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._schedule_store: ScheduleStore | None = None
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # --- connections and transactions -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                               check_same_thread=False)  # close() may run on another thread
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        # Checkpoint every ~16 MB of WAL rather than 4 MB: a run's hot pages are then copied into the
        # database once for many commits (measured: ~20% more appends/s in batches of 50 runs).
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
        self._local.held = held = (os.getpid(), conn)
        with self._connections_lock:
            self._connections.append(held)
        return conn

    def _init_schema(self) -> None:
        conn = self._conn()
        # Switching a fresh file to WAL needs a moment alone with it: SQLite answers with the old mode,
        # rather than waiting, while another process opening the same file holds a lock.
        deadline = time.monotonic() + self._timeout
        while conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            if time.monotonic() > deadline:
                raise ConfigurationError(f"SQLite could not put {self.path} in WAL mode; use a local disk")
            time.sleep(0.01)
        with _Write(conn):
            for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would COMMIT early
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (STORE_SCHEMA,))
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        if found != STORE_SCHEMA:
            raise ConfigurationError(f"{self.path} has store schema {found}; this Beluga knows "
                                     f"{STORE_SCHEMA}. Use the Beluga release that wrote it, or migrate")

    def schedules(self) -> ScheduleStore:
        """The schedules kept in this store (its file)."""
        if self._schedule_store is None:
            from beluga.stores.schedule_store import SQLiteSchedules

            self._schedule_store = SQLiteSchedules(self)
        return self._schedule_store

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            if pid == os.getpid():  # a connection inherited through fork belongs to the parent
                conn.close()
        self._local = threading.local()

    # --- reads --------------------------------------------------------------------------------------
    def _events(self, conn: sqlite3.Connection, workflow_id: str, after: int = 0) -> list[Event]:
        return [decode_event(data) for (data,) in conn.execute(_SELECT_EVENTS, (workflow_id, after))]

    def _state(self, conn: sqlite3.Connection, workflow_id: str, row: tuple) -> WorkflowState:
        return replace(self._summary(row), history=tuple(self._events(conn, workflow_id)))

    @staticmethod
    def _summary(row: tuple) -> WorkflowState:
        _run_id, _type, status, _created, updated_at, _version, summary = row
        return replace(decode_state(summary), status=WorkflowStatus(status), updated_at=updated_at)

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        row = self._conn().execute(_SELECT_RUN, (workflow_id,)).fetchone()
        return None if row is None else self._summary(row)

    def load(self, workflow_id: str) -> WorkflowState | None:
        conn = self._conn()
        with _Read(conn):  # summary and history from one snapshot
            row = conn.execute(_SELECT_RUN, (workflow_id,)).fetchone()
            return None if row is None else self._state(conn, workflow_id, row)

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        """One keyset query per batch (`(created_at, workflow_id)` past the cursor, in the order of the
        page); what SQL does not say (stuck: an error in the summary; a kept copy's id) is checked here."""
        f = filter or DEFAULT_FILTER
        limit = max(f.limit, 0)
        backward = f.before is not None and f.after is None
        bound = f.before if backward else f.after
        where, params = _where(f)
        batch = max(limit, 100)
        out: list[WorkflowState] = []
        conn = self._conn()
        with _Read(conn):
            while len(out) < limit:
                sql = (f"SELECT workflow_id, {_RUN_COLUMNS} FROM runs WHERE "
                       + " AND ".join([*where, "(created_at, workflow_id) " + (">" if backward else "<") + " (?, ?)"])
                       + (" ORDER BY created_at ASC, workflow_id ASC" if backward
                          else " ORDER BY created_at DESC, workflow_id DESC") + " LIMIT ?")
                start = bound if bound is not None else (float("-inf") if backward else float("inf"), "")
                rows = conn.execute(sql, (*params, *start, batch)).fetchall()
                for row in rows:
                    if len(out) < limit and id_matches(f, row[0]):
                        summary = self._summary(row[1:])
                        if f.stuck is None or is_stuck(summary) == f.stuck:
                            out.append(replace(summary, history=tuple(self._events(conn, row[0]))))
                if len(rows) < batch:
                    break
                bound = (rows[-1][4], rows[-1][0])
        return out[::-1] if backward else out

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        return self._events(self._conn(), workflow_id, after)

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        f = counting(filter)
        where, params = _where(f)
        if f.stuck is None and f.kept_copies:
            out = {status.value: 0 for status in WorkflowStatus}
            sql = "SELECT status, COUNT(*) FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
            for status, n in self._conn().execute(sql + " GROUP BY status", params):
                out[status] = n
            return out
        # a kept copy is known by its id, a stuck run by its summary: read those of the runs SQL finds
        sql = f"SELECT workflow_id, {_RUN_COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        return count_by_status(f, (self._summary(row[1:]) for row in self._conn().execute(sql, params)))

    # --- writes -------------------------------------------------------------------------------------
    @staticmethod
    def _rows(state: WorkflowState) -> tuple[tuple, builtins.list[tuple]]:
        check_events(state.history, 0, state.workflow_id)
        run = (state.workflow_id, state.run_id, state.workflow_type, WorkflowStatus(state.status).value,
               state.created_at, state.updated_at, len(state.history), encode_state(state))
        return run, _event_rows(state.workflow_id, state.run_id, state.history)

    def save(self, state: WorkflowState) -> None:
        run, events = self._rows(state)
        conn = self._conn()
        with _Write(conn):
            conn.execute("DELETE FROM events WHERE workflow_id = ?", (state.workflow_id,))
            conn.execute(_UPSERT_RUN, run)
            conn.executemany(_INSERT_EVENT, events)
            sqlite_search.write(conn, state.workflow_id, state.search_attributes, state.created_at)

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        run, events = self._rows(state)
        conn = self._conn()
        with _Write(conn):
            current = conn.execute("SELECT run_id, status FROM runs WHERE workflow_id = ?",
                                   (state.workflow_id,)).fetchone()
            if current is not None:
                check_create(state.workflow_id, current[0], current[1], replace_run_id)
                conn.execute("DELETE FROM events WHERE workflow_id = ?", (state.workflow_id,))
            conn.execute(_UPSERT_RUN, run)
            conn.executemany(_INSERT_EVENT, events)
            sqlite_search.write(conn, state.workflow_id, state.search_attributes, state.created_at,
                                fresh=current is None)

    def delete(self, workflow_id: str) -> None:
        conn = self._conn()
        with _Write(conn):
            conn.execute("DELETE FROM runs WHERE workflow_id = ?", (workflow_id,))
            conn.execute("DELETE FROM events WHERE workflow_id = ?", (workflow_id,))
            sqlite_search.forget(conn, workflow_id)

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        if not appends:
            return []
        # Encode and validate everything first: a bad value fails the call before the write lock is taken.
        prepared = []
        for a in appends:
            check_append(a)
            prepared.append((a, _event_rows(a.workflow_id, a.run_id, a.events)))
        refused: list[str] = []
        rows: list[tuple] = []
        conn = self._conn()
        with _Write(conn):
            for a, events in prepared:
                if self._apply(conn, a):
                    rows.extend(events)
                else:
                    refused.append(a.workflow_id)
            if rows:
                conn.executemany(_INSERT_EVENT, rows)
        return refused

    @staticmethod
    def _apply(conn: sqlite3.Connection, a: Append) -> bool:
        version = a.expected_version + len(a.events)
        updated_at = a.updated_at or None
        if not needs_summary(a):  # the common case: one conditional UPDATE, no summary round trip
            if a.status is None:
                params: tuple = (version, updated_at, a.workflow_id, a.run_id, a.expected_version)
                return conn.execute(_BUMP, params).rowcount == 1
            params = (version, WorkflowStatus(a.status).value, updated_at, a.workflow_id, a.run_id,
                      a.expected_version)
            return conn.execute(_BUMP_STATUS, params).rowcount == 1
        row = conn.execute(_SELECT_RUN, (a.workflow_id,)).fetchone()
        if row is None or not accepts(row[0], row[5], a):
            return False
        state = replace(decode_state(row[6]), status=WorkflowStatus(row[2]), updated_at=row[4])
        state = summarize(state, a)
        conn.execute(_REWRITE, (version, state.status.value, state.updated_at, encode_state(state),
                                a.workflow_id))
        if a.search_attributes is not None:  # an upsert: indexed in the same transaction
            sqlite_search.write(conn, a.workflow_id, state.search_attributes, row[3])
        return True


def _event_rows(workflow_id: str, run_id: str, events: Iterable[Event]) -> list[tuple]:
    return [(workflow_id, run_id, ev.id, encode_event(ev)) for ev in events]


class _Write:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error. Immediate, because a deferred
    transaction that reads and then writes can fail with SQLITE_BUSY instead of waiting."""

    __slots__ = ("conn",)
    begin = "BEGIN IMMEDIATE"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute(self.begin)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class _Read(_Write):
    """A read snapshot: WAL readers never block the writer, nor wait for it."""

    __slots__ = ()
    begin = "BEGIN"


def _where(f: WorkflowFilter) -> tuple[builtins.list[str], builtins.list[object]]:
    """The SQL conditions of the filter's status, type, id prefix and search attributes (`stuck` only needs
    the run open)."""
    where: builtins.list[str] = []
    params: builtins.list[object] = []
    status = WorkflowStatus.RUNNING if f.stuck and f.status is None else f.status
    if status is not None:
        where.append("status = ?")
        params.append(WorkflowStatus(status).value)
    if f.workflow_type is not None:
        where.append("workflow_type = ?")
        params.append(f.workflow_type)
    if f.id_prefix:
        where.append("substr(workflow_id, 1, ?) = ?")
        params.extend((len(f.id_prefix), f.id_prefix))
    if f.where:
        sql, args = sqlite_search.conditions(f.where)
        where.extend(sql)
        params.extend(args)
    return where, params
