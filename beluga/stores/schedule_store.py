"""Where schedules are kept: beside the runs, in the history store (`store.schedules()`).

A schedule is one record (`beluga.core.schedules.Schedule`, stored through the codec) and the time a
process should next look at it (`due_at`). Every write is conditional on the version the writer read
(`put`), as run appends are: of the workers that plan the same tick, one stores its plan and the others
are refused, so each tick is decided once. The memory and SQLite implementations are here; the Redis one
is `beluga/stores/redis_schedules.py`."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING

from beluga import codec
from beluga.core.errors import ScheduleAlreadyExists
from beluga.core.schedules import Schedule, due_at, from_dict, to_dict

if TYPE_CHECKING:
    from beluga.stores.sqlite import SQLiteStore


def encode(s: Schedule) -> bytes:
    return codec.encode(to_dict(s), label="schedule")


def decode(data: bytes) -> Schedule:
    return from_dict(codec.decode(data))


class ScheduleStore(ABC):
    @abstractmethod
    def put(self, s: Schedule, expected_version: int) -> Schedule | None:
        """Write `s` if the stored record is at `expected_version` (0: there is none yet); returns the
        record as written (its version one more), or None when refused."""

    @abstractmethod
    def get(self, schedule_id: str) -> Schedule | None:
        """The schedule, or None."""

    @abstractmethod
    def all(self) -> list[Schedule]:
        """Every schedule, by id."""

    @abstractmethod
    def due(self, now: float, limit: int = 100) -> list[str]:
        """Ids of schedules to look at by `now` (their `due_at` has come), soonest first."""

    @abstractmethod
    def remove(self, schedule_id: str) -> bool:
        """Forget the schedule (its runs stay); False when there was none."""

    def add(self, s: Schedule) -> Schedule:
        """Store a new schedule; ScheduleAlreadyExists when its id is taken."""
        written = self.put(replace(s, version=0), 0)
        if written is None:
            raise ScheduleAlreadyExists(f"schedule {s.id!r} already exists")
        return written


class MemorySchedules(ScheduleStore):
    """The schedules of an InMemoryStore: encoded, so what callers hold is never what is stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[int, bytes, float | None]] = {}

    def put(self, s: Schedule, expected_version: int) -> Schedule | None:
        written = replace(s, version=expected_version + 1)
        with self._lock:
            found = self._records.get(s.id)
            if (found[0] if found else 0) != expected_version:
                return None
            self._records[s.id] = (written.version, encode(written), due_at(written))
        return written

    def get(self, schedule_id: str) -> Schedule | None:
        with self._lock:
            found = self._records.get(schedule_id)
        return decode(found[1]) if found else None

    def all(self) -> list[Schedule]:
        with self._lock:
            records = sorted(self._records.items())
        return [decode(data) for _, (_, data, _) in records]

    def due(self, now: float, limit: int = 100) -> list[str]:
        with self._lock:
            found = [(due, sid) for sid, (_, _, due) in self._records.items() if due is not None and due <= now]
        return [sid for _, sid in sorted(found)[:limit]]

    def remove(self, schedule_id: str) -> bool:
        with self._lock:
            return self._records.pop(schedule_id, None) is not None


_TABLE = ("CREATE TABLE IF NOT EXISTS schedules (id TEXT PRIMARY KEY, version INTEGER NOT NULL, due REAL, "
          "data BLOB NOT NULL)")


class SQLiteSchedules(ScheduleStore):
    """The schedules of a SQLiteStore, in its file (table `schedules`), shared by every process using it."""

    def __init__(self, store: SQLiteStore) -> None:
        from beluga.stores.sqlite import _Write

        self._store, self._write = store, _Write
        conn = store._conn()
        with _Write(conn):
            conn.execute(_TABLE)
            conn.execute("CREATE INDEX IF NOT EXISTS schedules_by_due ON schedules (due)")

    def put(self, s: Schedule, expected_version: int) -> Schedule | None:
        written = replace(s, version=expected_version + 1)
        conn = self._store._conn()
        with self._write(conn):
            row = conn.execute("SELECT version FROM schedules WHERE id = ?", (s.id,)).fetchone()
            if (row[0] if row else 0) != expected_version:
                return None
            conn.execute("INSERT OR REPLACE INTO schedules (id, version, due, data) VALUES (?, ?, ?, ?)",
                         (s.id, written.version, due_at(written), encode(written)))
        return written

    def get(self, schedule_id: str) -> Schedule | None:
        row = self._store._conn().execute("SELECT data FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return decode(row[0]) if row else None

    def all(self) -> list[Schedule]:
        return [decode(data) for (data,) in self._store._conn().execute("SELECT data FROM schedules ORDER BY id")]

    def due(self, now: float, limit: int = 100) -> list[str]:
        rows = self._store._conn().execute(
            "SELECT id FROM schedules WHERE due <= ? ORDER BY due LIMIT ?", (now, limit))
        return [sid for (sid,) in rows]

    def remove(self, schedule_id: str) -> bool:
        conn = self._store._conn()
        with self._write(conn):
            return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount > 0
