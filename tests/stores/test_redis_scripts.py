"""The Redis store's scripts (beluga/lua/append.lua, create.lua) run directly against a real server,
through their builders, with the keys inspected after each call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.lua import Scripts
from beluga.stores.redis import INLINE_EVENTS, RedisStore
from beluga.stores.redis_scripts import AppendCall, CreateCall


@dataclass
class Run:
    """One run's keys under a prefix of its own, and the scripts to call on them."""

    r: redis.Redis
    lua: Scripts
    wid: str

    def key(self, name: str) -> str:
        return f"{self.wid}:{name}"

    def seed(self, run_id: str = "r1", version: int = 2, old_layout: bool = False, **fields: Any) -> None:
        """A run at `version`, written by hand so that the append tests do not depend on create.lua; past
        INLINE_EVENTS its events are one stream entry, or with `old_layout` one entry each, as earlier
        versions wrote them."""
        self.r.hset(self.key("run"), mapping={"run_id": run_id, "version": version, "status": "running",
                                              "summary": b"S0", **fields})
        events = [f"event {v}".encode() for v in range(1, version + 1)]
        if version <= INLINE_EVENTS:
            self.r.hset(self.key("run"), mapping={f"e:{v}": e for v, e in enumerate(events, 1)})
        elif old_layout:
            for v, e in enumerate(events, 1):
                self.r.xadd(self.key("events"), {"e": e}, id=f"0-{v}")
        else:
            self.r.xadd(self.key("events"), {str(v): e for v, e in enumerate(events, 1)}, id=f"0-{version}")

    def append(self, **kw: Any) -> int:
        args: dict[str, Any] = dict(
            run_key=self.key("run"), events_key=self.key("events"), inbox_key=self.key("inbox"),
            lease_key=self.key("lease"), dispatched_key=self.key("dispatched"),
            timers_key=self.key("timers"), run_id="r1", expected_version=2, inbox_used=0, status=None,
            summary=None, updated=None, lease_token=None, dispatch_deadline=0.0, workflow_id=self.wid,
            index_prefix=self.key("index:"))
        return self.lua.run(AppendCall(**{**args, **kw}))

    def create(self, **kw: Any) -> bytes:
        args: dict[str, Any] = dict(
            run_key=self.key("run"), events_key=self.key("events"), inbox_key=self.key("inbox"), run_id="r1",
            status="running", summary=b"S", workflow_type="order", created=10.0, replace_run_id=None,
            updated=11.0, workflow_id=self.wid, index_prefix=self.key("index:"), events=[b"e1", b"e2"])
        return self.lua.run(CreateCall(**{**args, **kw}))

    def run_hash(self) -> dict[str, str]:
        """The run hash without the events it holds."""
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key("run")).items()
                if not k.startswith(b"e:")}

    def entries(self) -> list[tuple[int, list[int]]]:
        """The run's stream, as (entry id, the ids of the events it holds) per entry: an entry holds the
        events its fields name, the last its own id; an earlier version's entry is one field `e`, the
        event whose id is the entry's."""
        out = []
        for eid, fields in self.r.xrange(self.key("events")):
            ms, seq = eid.split(b"-")
            assert ms == b"0"
            ids = [int(seq)] if list(fields) == [b"e"] else [int(name) for name in fields]
            assert ids[-1] == int(seq), f"entry {eid!r} does not end with its own id"
            out.append((int(seq), ids))
        return out

    def events(self) -> list[tuple[int, bytes]]:
        """(id, event) in order, wherever they are: fields e:<id> of the run hash while the run has at
        most INLINE_EVENTS events, else the run's stream (and never both), entries that hold ids 1, 2,
        ... in order."""
        inline = {int(k[2:]): v for k, v in self.r.hgetall(self.key("run")).items() if k.startswith(b"e:")}
        listed = [(int(name) if name != b"e" else int(eid.split(b"-")[1]), event)
                  for eid, fields in self.r.xrange(self.key("events")) for name, event in fields.items()]
        assert [i for i, _ in listed] == [i for _, ids in self.entries() for i in ids]
        assert [i for i, _ in listed] == list(range(1, len(listed) + 1))
        assert not (inline and listed), "events in the run hash and in the stream at once"
        version = int(self.r.hget(self.key("run"), "version") or 0)
        if version <= INLINE_EVENTS:
            assert sorted(inline) == list(range(1, version + 1)) and not listed
            return sorted(inline.items())
        assert len(listed) == version and not inline
        return listed

    def inbox(self) -> list[bytes]:
        return self.r.lrange(self.key("inbox"), 0, -1)


@pytest.fixture
def run(redis_url: str) -> Iterator[Run]:
    r = redis.Redis.from_url(redis_url)
    yield Run(r, Scripts(r, [AppendCall, CreateCall]), f"t{uuid.uuid4().hex[:8]}")
    r.close()


# --- append.lua ---------------------------------------------------------------------------------------
def test_append_writes_events_after_the_expected_version(run: Run) -> None:
    run.seed()
    assert run.append(events=[b"e3", b"e4"]) == 0
    assert run.events()[2:] == [(3, b"e3"), (4, b"e4")]
    assert run.run_hash()["version"] == "4"


def test_a_run_outgrowing_its_hash_moves_every_event_to_the_stream(run: Run) -> None:
    run.seed(version=INLINE_EVENTS - 1)
    assert run.append(expected_version=INLINE_EVENTS - 1, events=[b"last inline"]) == 0
    assert run.r.exists(run.key("events")) == 0 and run.events()[-1] == (INLINE_EVENTS, b"last inline")
    assert run.append(expected_version=INLINE_EVENTS, events=[b"x", b"y"]) == 0
    assert run.events() == [*((v, f"event {v}".encode()) for v in range(1, INLINE_EVENTS)),
                            (INLINE_EVENTS, b"last inline"), (INLINE_EVENTS + 1, b"x"), (INLINE_EVENTS + 2, b"y")]
    assert run.append(expected_version=INLINE_EVENTS + 2, events=[b"z"]) == 0
    assert run.events()[-2:] == [(INLINE_EVENTS + 2, b"y"), (INLINE_EVENTS + 3, b"z")]


def test_each_append_past_the_hash_is_one_stream_entry(run: Run) -> None:
    """The append that outgrows the hash takes the inline events into its entry; each later append is one
    entry, id 0-<its last event's id>."""
    i = INLINE_EVENTS
    run.seed(version=i - 1)
    assert run.append(expected_version=i - 1, events=[b"a", b"b"]) == 0
    assert run.entries() == [(i + 1, list(range(1, i + 2)))]
    assert run.append(expected_version=i + 1, events=[b"c"]) == 0
    assert run.append(expected_version=i + 2, events=[b"d", b"e", b"f"]) == 0
    assert run.entries()[1:] == [(i + 2, [i + 2]), (i + 5, [i + 3, i + 4, i + 5])]
    assert run.events() == [*((v, f"event {v}".encode()) for v in range(1, i)),
                            *zip(range(i, i + 6), [b"a", b"b", b"c", b"d", b"e", b"f"], strict=True)]


def test_a_large_append_is_one_entry_per_thousand_events(run: Run) -> None:
    run.create(events=[f"e{v}".encode() for v in range(1, 2501)])
    assert [(eid, ids[0]) for eid, ids in run.entries()] == [(1000, 1), (2000, 1001), (2500, 2001)]
    assert run.events() == [(v, f"e{v}".encode()) for v in range(1, 2501)]
    assert run.append(expected_version=2500, events=[b"x"]) == 0
    assert run.entries()[-1] == (2501, [2501])


def test_an_append_onto_a_stream_of_an_earlier_version_follows_its_entries(run: Run) -> None:
    """Earlier versions wrote one entry per event, 0-<id> with the one field e: an append adds its own
    entry after them."""
    i = INLINE_EVENTS
    run.seed(version=i + 2, old_layout=True)
    assert run.append(expected_version=i + 2, events=[b"x", b"y"]) == 0
    assert run.entries() == [*((v, [v]) for v in range(1, i + 3)), (i + 4, [i + 3, i + 4])]
    assert run.events() == [*((v, f"event {v}".encode()) for v in range(1, i + 3)), (i + 3, b"x"), (i + 4, b"y")]


def test_a_long_run_replaced_by_a_short_one_keeps_no_event_of_the_old(run: Run) -> None:
    run.create(run_id="r1", events=[f"old {i}".encode() for i in range(1, 2 * INLINE_EVENTS)])
    run.r.hset(run.key("run"), "status", "completed")
    assert run.create(run_id="r2", events=[b"n1", b"n2"]) == b"+"
    assert run.events() == [(1, b"n1"), (2, b"n2")] and run.r.exists(run.key("events")) == 0
    run.r.hset(run.key("run"), "status", "completed")
    assert run.create(run_id="r3", events=[f"new {i}".encode() for i in range(1, 2 * INLINE_EVENTS)]) == b"+"
    assert run.events() == [(i, f"new {i}".encode()) for i in range(1, 2 * INLINE_EVENTS)]


def _untouched(run: Run) -> tuple[Any, ...]:
    return (run.run_hash(), run.events(), run.inbox(), run.r.get(run.key("lease")),
            run.r.hgetall(run.key("attempts")), run.r.zrange(run.key("dispatched"), 0, -1))


@pytest.mark.parametrize("stale", [{"expected_version": 1}, {"expected_version": 3}, {"run_id": "r0"}])
def test_append_is_refused_unless_the_run_is_the_writers(run: Run, stale: dict[str, Any]) -> None:
    run.seed()
    run.r.rpush(run.key("inbox"), b"m1")
    run.r.set(run.key("lease"), "tok")
    before = _untouched(run)
    assert run.append(**stale, events=[b"x"], inbox_used=1, lease_token="tok", status="completed", summary=b"S1",
                      updated=5.0, attempts=[(1, 1)], dispatch_deadline=9.0) == -1
    assert _untouched(run) == before


def test_append_to_a_missing_run_is_refused(run: Run) -> None:
    assert run.append(expected_version=0, events=[b"x"]) == -1
    assert run.r.exists(run.key("run"), run.key("events")) == 0


def test_inbox_is_consumed_exactly_by_inbox_used(run: Run) -> None:
    run.seed()
    run.r.rpush(run.key("inbox"), b"m1", b"m2", b"m3")
    assert run.append(events=[b"e3"], inbox_used=2) == 1
    assert run.inbox() == [b"m3"]
    assert run.append(expected_version=3, events=[b"e4"]) == 1     # inbox_used 0 consumes nothing
    assert run.inbox() == [b"m3"]


def test_lease_is_released_only_with_its_token(run: Run) -> None:
    run.seed()
    run.r.set(run.key("lease"), "theirs")
    assert run.append(lease_token="mine") == 0
    assert run.r.get(run.key("lease")) == b"theirs"
    assert run.append(lease_token=None) == 0
    assert run.r.get(run.key("lease")) == b"theirs"
    assert run.append(lease_token="theirs") == 0
    assert run.r.exists(run.key("lease")) == 0


def test_status_summary_and_update_time_change_only_when_given(run: Run) -> None:
    run.seed(updated="1.0")
    run.append(events=[b"e3"])
    assert {k: run.run_hash()[k] for k in ("status", "summary", "updated")} == {
        "status": "running", "summary": "S0", "updated": "1.0"}
    run.append(expected_version=3, status="completed", summary=b"S1", updated=2.5)
    assert {k: run.run_hash()[k] for k in ("status", "summary", "updated", "version")} == {
        "status": "completed", "summary": "S1", "updated": "2.5", "version": "3"}


def test_attempts_are_allowed_and_noted_as_dispatched(run: Run) -> None:
    run.seed()
    assert run.append(events=[b"e3"], attempts=[(7, 2), (8, 1)], dispatch_deadline=123.5) == 0
    assert run.r.zrange(run.key("dispatched"), 0, -1, withscores=True) == [
        (f"{run.wid}\x007\x002".encode(), 123.5), (f"{run.wid}\x008\x001".encode(), 123.5)]


def test_append_arms_its_timers_in_the_same_step_and_a_refused_one_arms_none(run: Run) -> None:
    run.seed()
    assert run.append(expected_version=1, events=[b"e3"], timers=[(50.0, b"w\x00t1")]) == -1
    assert run.r.zcard(run.key("timers")) == 0
    assert run.append(events=[b"e3"], timers=[(50.0, b"w\x00t1"), (60.0, b"w\x00t2")]) == 0
    assert run.r.zrange(run.key("timers"), 0, -1, withscores=True) == [(b"w\x00t1", 50.0), (b"w\x00t2", 60.0)]


# --- create.lua ---------------------------------------------------------------------------------------
def test_create_writes_the_run_and_its_first_events(run: Run) -> None:
    assert run.create() == b""   # the id had no run
    assert run.run_hash() == {"run_id": "r1", "status": "running", "summary": "S", "type": "order",
                              "created": "10.0", "updated": "11.0", "version": "2"}
    assert run.events() == [(1, b"e1"), (2, b"e2")]


def test_create_is_refused_by_an_open_run_and_changes_nothing(run: Run) -> None:
    run.create(run_id="r1")
    run.r.rpush(run.key("inbox"), b"m1")
    before = (run.run_hash(), run.events(), run.inbox())
    assert run.create(run_id="r2", events=[b"x"]) == b"r1"
    assert run.create(run_id="r2", replace_run_id="r0", events=[b"x"]) == b"r1"   # not the open run
    assert (run.run_hash(), run.events(), run.inbox()) == before


def test_create_replaces_a_closed_run_and_drops_its_inbox(run: Run) -> None:
    run.create(run_id="r1", events=[b"a", b"b", b"c"])
    run.r.hset(run.key("run"), "status", "completed")
    run.r.rpush(run.key("inbox"), b"late")
    assert run.create(run_id="r2", events=[b"n1"]) == b"+"   # in place of an earlier run
    assert run.events() == [(1, b"n1")]
    assert run.run_hash()["run_id"] == "r2" and run.run_hash()["version"] == "1"
    assert run.inbox() == []


def test_continue_as_new_replaces_the_open_run_and_keeps_its_inbox(run: Run) -> None:
    run.create(run_id="r1", events=[b"a", b"b", b"c"])
    run.r.rpush(run.key("inbox"), b"signal for the next run")
    assert run.create(run_id="r2", replace_run_id="r1", events=[b"n1"]) == b"+"
    assert run.events() == [(1, b"n1")]
    assert run.inbox() == [b"signal for the next run"]


# --- the store's builder -------------------------------------------------------------------------------
def test_append_call_names_the_dispatch_record_of_the_runs_shard(redis_url: str) -> None:
    """An append that allows attempts notes them in the dispatch record of the run's shard, which the
    scheduler scans; it shares the run's hash tag, so a Redis Cluster runs the script."""
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    a = Append("w", "r1", 1, (Event(2, "activity_completed", 1.0, {}),), updated_at=3.0)
    plain = store.append_call(a)
    allowing = store.append_call(a, attempts=[(2, 1)], lease_token="tok", inbox_used=1, dispatch_deadline=9.0)
    assert plain is not None and allowing is not None
    assert plain.dispatched_key == allowing.dispatched_key == f"{store.tag('w')}:dispatched"
    assert store.tag("w") in (plain.run_key, allowing.run_key)[0]
    assert (allowing.attempts, allowing.lease_token, allowing.inbox_used) == (((2, 1),), "tok", 1)
    assert store.append_call(Append("w", "r1", 1, (), status=WorkflowStatus.COMPLETED)) is None   # no such run
    store.close()


def test_append_one_reports_refusal_and_what_is_left(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    store.create(WorkflowState("w", "r1", "order", history=(Event(1, "workflow_started", 1.0, {}),)))
    store.redis.rpush(store.keys("w")[2], b"m1", b"m2")
    step = (Event(2, "signal_received", 2.0, {}),)
    assert store.append_one(Append("w", "r0", 1, step), inbox_used=1) is None
    assert store.append_one(Append("w", "r1", 1, step), inbox_used=1) == 1
    assert store.version("w") == ("r1", 2)
    store.close()


def test_load_many_reads_each_run_as_load_does(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    short = tuple(Event(i, "workflow_started" if i == 1 else "signal_received", float(i), {"n": i})
                  for i in range(1, 4))
    long = tuple(Event(i, "workflow_started" if i == 1 else "signal_received", float(i), {"n": i})
                 for i in range(1, INLINE_EVENTS + 4))                 # past the hash: in the run's stream
    store.create(WorkflowState("s", "r1", "order", history=short))
    store.create(WorkflowState("l", "r2", "order", history=long))
    got = store.load_many(["s", "ghost", "l"])
    assert got == [store.load("s"), None, store.load("l")]
    assert got[0] is not None and got[0].history == short
    assert got[2] is not None and got[2].history == long and got[2].run_id == "r2"
    assert store.load_many([]) == []
    store.close()


def test_append_many_appends_each_on_its_own_and_indexes_the_runs_it_closed(redis_url: str) -> None:
    """A batch's appends in one pipeline: each is conditional on its own run's version (a refused one
    changes nothing and takes none of the others with it), and the runs they closed move to the index
    of their new status."""
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    states = {wid: WorkflowState(wid, "r1", "order", history=(Event(1, "workflow_started", 1.0, {}),),
                                 created_at=c) for wid, c in (("a", 10.0), ("b", 20.0), ("c", 30.0))}
    for state in states.values():
        store.create(state)
    store.redis.rpush(store.keys("a")[2], b"m1", b"m2")
    step = (Event(2, "signal_received", 2.0, {}),)
    closing = (Event(2, "workflow_completed", 2.0, {}),)
    calls = [store.append_call(Append("a", "r1", 1, step), inbox_used=1, summary=states["a"]),
             store.append_call(Append("b", "r0", 1, step), summary=states["b"]),          # stale: refused
             store.append_call(Append("c", "r1", 1, closing, status=WorkflowStatus.COMPLETED, result=7),
                               summary=states["c"])]
    assert store.append_many(calls) == [1, None, 0]   # messages left in each inbox
    assert [store.version(w)[1] for w in "abc"] == [2, 1, 2]
    assert [s.workflow_id for s in store.list(WorkflowFilter(status=WorkflowStatus.COMPLETED))] == ["c"]
    assert sorted(s.workflow_id for s in store.list(WorkflowFilter(status=WorkflowStatus.RUNNING))) == ["a", "b"]
    assert store.load_summary("c").result == 7
    assert store.append_many([]) == []
    store.close()


# --- the store's reads of a run's stream ------------------------------------------------------------------
def _ev(i: int) -> Event:
    return Event(i, "workflow_started" if i == 1 else "signal_received", float(i), {"n": i})


def _as_an_earlier_version_wrote_it(r: redis.Redis, events_key: str) -> None:
    """Rewrites a run's stream as earlier versions wrote it: one entry 0-<id> per event, one field e."""
    entries = r.xrange(events_key)
    r.delete(events_key)
    for _, fields in entries:
        for name, event in fields.items():
            r.xadd(events_key, {"e": event}, id=f"0-{int(name)}")


def _reads_back(store: RedisStore, wid: str, history: list[Event]) -> None:
    """load, load_many and history(after=k) for every k give `history`."""
    state = store.load(wid)
    assert state is not None and state.history == tuple(history)
    assert store.load_many([wid]) == [state]
    for k in range(len(history) + 2):
        assert store.history(wid, after=k) == history[k:], f"after={k}"


def test_appends_past_the_hash_read_back_in_order(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    history = [_ev(i) for i in range(1, 4)]
    store.create(WorkflowState("w", "r1", "order", history=tuple(history)))
    for size in (2, 4, 1, 3, 5, 1):            # the 4 outgrows the hash
        step = tuple(_ev(len(history) + i) for i in range(1, size + 1))
        assert store.append_one(Append("w", "r1", len(history), step)) == 0
        history += step
        _reads_back(store, "w", history)
    assert [eid for eid, _ in store.redis.xrange(store.keys("w")[1])] == [b"0-9", b"0-10", b"0-13", b"0-18", b"0-19"]
    store.close()


def test_a_stream_written_by_an_earlier_version_keeps_replaying(redis_url: str) -> None:
    """A run whose stream holds one entry per event, as earlier versions wrote it, reads back whole, and
    the appends after it add entries of the new layout that read back with it."""
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    history = [_ev(i) for i in range(1, INLINE_EVENTS + 3)]
    store.create(WorkflowState("w", "r1", "order", history=tuple(history)))
    events_key = store.keys("w")[1]
    _as_an_earlier_version_wrote_it(store.redis, events_key)
    _reads_back(store, "w", history)
    for size in (1, 3):
        step = tuple(_ev(len(history) + i) for i in range(1, size + 1))
        assert store.append_one(Append("w", "r1", len(history), step)) == 0
        history += step
        _reads_back(store, "w", history)
    n = INLINE_EVENTS + 2
    assert [eid for eid, _ in store.redis.xrange(events_key)] == [
        *(f"0-{v}".encode() for v in range(1, n + 1)), f"0-{n + 1}".encode(), f"0-{n + 4}".encode()]
    store.close()
