"""The schedule store's contract (beluga/stores/schedule_store.py, redis_schedules.py) on every store that
keeps schedules: versioned writes that refuse a stale writer, the due set, listing and removal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from beluga.core import schedules as sc
from beluga.core.errors import ConfigurationError, ScheduleAlreadyExists
from beluga.stores import InMemoryStore, RedisStore, SQLiteStore
from beluga.stores.base import WorkflowStore
from beluga.stores.schedule_store import ScheduleStore
from tests.stores.conftest import _prefix

T0 = 1_800_000_000.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def schedules(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScheduleStore]:
    if request.param == "memory":
        store: WorkflowStore = InMemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "beluga.db"))
    else:
        store = RedisStore(request.getfixturevalue("redis_url"), prefix=_prefix())
    try:
        yield store.schedules()
    finally:
        store.close()


def minutely(sid: str) -> sc.Schedule:
    return sc.new_schedule(sid, "report", {"n": 1}, sc.ScheduleSpec(intervals=((60, 0),)), T0)


def test_a_schedule_is_added_once_and_read_back(schedules: ScheduleStore) -> None:
    s = schedules.add(minutely("a"))
    assert s.version == 1 and schedules.get("a") == s
    with pytest.raises(ScheduleAlreadyExists):
        schedules.add(minutely("a"))
    assert schedules.get("missing") is None


def test_a_write_from_a_stale_version_is_refused(schedules: ScheduleStore) -> None:
    s = schedules.add(minutely("a"))
    planned = sc.plan(s, T0 + 61)
    first = schedules.put(planned, s.version)
    assert first is not None and first.version == 2
    assert schedules.put(planned, s.version) is None  # a second worker planned the same tick: refused
    assert schedules.get("a") == first


def test_due_lists_what_to_look_at_soonest_first(schedules: ScheduleStore) -> None:
    schedules.add(minutely("late"))
    early = replace(minutely("early"), next_tick=T0 + 30)
    schedules.add(early)
    assert schedules.due(T0) == []
    assert schedules.due(T0 + 30) == ["early"]
    assert schedules.due(T0 + 60) == ["early", "late"]
    assert schedules.due(T0 + 60, limit=1) == ["early"]
    done = schedules.get("early")
    assert done is not None
    schedules.put(replace(done, next_tick=None), done.version)  # nothing left to fire: never due
    assert schedules.due(T0 + 10**6) == ["late"]


def test_list_and_remove(schedules: ScheduleStore) -> None:
    for sid in ("b", "a", "c"):
        schedules.add(minutely(sid))
    assert [s.id for s in schedules.all()] == ["a", "b", "c"]
    assert schedules.remove("b") and not schedules.remove("b")
    assert [s.id for s in schedules.all()] == ["a", "c"] and "b" not in schedules.due(T0 + 60)
    assert schedules.add(minutely("b")).version == 1  # a removed id may be used again


def test_stores_without_schedules_say_so() -> None:
    class Bare(InMemoryStore):
        schedules = WorkflowStore.schedules

    with pytest.raises(ConfigurationError, match="keeps no schedules"):
        Bare().schedules()
