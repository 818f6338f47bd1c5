"""What only the SQLite store promises: a file that survives restarts and is shared by processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import beluga
from beluga.core.errors import ConfigurationError
from beluga.core.records import Append, Event, WorkflowState, WorkflowStatus
from beluga.stores.sqlite import STORE_SCHEMA, SQLiteStore

# Each child appends `count` events to one run, re-reading the history whenever another writer won.
_WRITER = """
import sys
from beluga.core.records import Append, Event
from beluga.stores.sqlite import SQLiteStore

path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SQLiteStore(path, timeout=60)
done = refusals = 0
while done < count:
    version = len(store.history("shared"))
    event = Event(version + 1, "signal_received", 0.0, {"writer": name, "n": done})
    if store.append([Append("shared", "r1", version, (event,))]):
        refusals += 1
    else:
        done += 1
print(refusals)
"""


def _started(workflow_id: str = "shared") -> WorkflowState:
    return WorkflowState(workflow_id, "r1", "t", history=(Event(1, "workflow_started", 0.0, {}),))


def test_processes_appending_to_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteStore(path).create(_started())
    root = os.path.dirname(os.path.dirname(os.path.abspath(beluga.__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    count = 150
    children = [subprocess.Popen([sys.executable, "-c", _WRITER, path, name, str(count)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name in ("p1", "p2", "p3")]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err

    history = SQLiteStore(path).history("shared")
    assert [e.id for e in history] == list(range(1, 3 * count + 2))
    marks = sorted((e.attrs["writer"], e.attrs["n"]) for e in history[1:])
    assert marks == [(name, n) for name in ("p1", "p2", "p3") for n in range(count)]


def test_data_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "nested" / "dir" / "beluga.db")  # parent directories are created
    store = SQLiteStore(path)
    store.create(_started("wf"))
    store.append([Append("wf", "r1", 1, (Event(2, "x", 1.0, {"k": (1, 2)}),), status=WorkflowStatus.COMPLETED,
                         result=[1], updated_at=5.0)])
    expected = store.load("wf")
    store.close()

    reopened = SQLiteStore(path)
    assert reopened.load("wf") == expected
    assert reopened.load("wf").result == [1] and reopened.load("wf").status is WorkflowStatus.COMPLETED
    reopened.close()


def test_file_is_in_wal_mode_and_records_its_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == STORE_SCHEMA
    conn.close()


def test_refuses_a_file_from_a_newer_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (STORE_SCHEMA + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="schema"):
        SQLiteStore(path)


def test_a_failed_batch_leaves_no_partial_write(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "b.db"))
    store.create(_started("a"))
    # Simulate corruption: an event row beyond the recorded version makes the batch's insert collide.
    conn = sqlite3.connect(store.path)
    conn.execute("INSERT INTO events VALUES ('a', 'r1', 3, x'00')")
    conn.commit()
    conn.close()
    batch = [Append("a", "r1", 1, (Event(2, "x", 0.0, {}), Event(3, "x", 0.0, {})))]
    with pytest.raises(sqlite3.IntegrityError):
        store.append(batch)
    check = sqlite3.connect(store.path)
    assert check.execute("SELECT version FROM runs WHERE workflow_id = 'a'").fetchone() == (1,)
    assert check.execute("SELECT count(*) FROM events WHERE workflow_id = 'a'").fetchone() == (2,)
    check.close()
    assert store.append([Append("a", "r1", 1, (Event(2, "x", 0.0, {}),))]) == []  # usable afterwards
    store.close()


def test_processes_opening_a_fresh_file_together(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    code = ("import sys; from beluga.core.records import Event, WorkflowState; "
            "from beluga.stores.sqlite import SQLiteStore; "
            "SQLiteStore(sys.argv[1]).create(WorkflowState(sys.argv[2], 'r', 't', "
            "history=(Event(1, 'workflow_started', 0.0, {}),)))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(beluga.__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    children = [subprocess.Popen([sys.executable, "-c", code, path, f"wf-{i}"], env=env,
                                 stderr=subprocess.PIPE, text=True) for i in range(4)]
    for child in children:
        assert child.wait(timeout=120) == 0, child.stderr.read() if child.stderr else ""
    assert sorted(s.workflow_id for s in SQLiteStore(path).list()) == [f"wf-{i}" for i in range(4)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "fork.db"))  # like a Celery prefork parent: opened, then forked
    store.create(_started())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = store.append([Append("shared", "r1", 1, (Event(2, "x", 0.0, {}),))]) == []
        store.close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.load("shared").version == 2  # the parent's connection still works
    store.close()


def test_in_memory_path_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="InMemoryStore"):
        SQLiteStore(":memory:")
