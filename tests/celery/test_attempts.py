"""An activity attempt's tracking, step by step against a real Redis: the cases behind issue 9's hangs,
each of which the outage suite (test_outages.py) can only hit by chance."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from beluga import codec, workflow
from beluga.celery.coordinator import CARRY_MAX, Coordinator
from beluga.celery.fleet import Fleet, Waiting
from beluga.celery.report import AttemptReport
from beluga.core.definitions import Registry
from beluga.core.records import EventType as E
from beluga.runs import new_run_state
from beluga.stores.redis import RedisStore
from tests.fleet import redis_server

LEASE = 2.0


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def fleet(url: str) -> Fleet:
    store = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}")
    return Fleet(store, LEASE)


def two_steps(ctx: object, _: object = None) -> str:
    """A workflow for a private registry (the test process must not register workflows that other fleet
    tests expect only workers to have)."""
    ctx.execute_activity("attempts_step", 1)  # type: ignore[attr-defined]
    ctx.execute_activity("attempts_step", 2)  # type: ignore[attr-defined]
    return "done"


def _member(wid: str, seq: int, attempt: int) -> str:
    return f"{wid}\x00{seq}\x00{attempt}"


def test_a_stale_report_leaves_the_attempt_that_replaced_it_allowed(fleet: Fleet) -> None:
    """Attempt 1 was reclaimed and attempt 2 allowed; attempt 1's late report must not retire attempt 2
    (whose claim would then find it stale and drop it: the run waited forever)."""
    deadlines = fleet.shard_key("w", "dispatched")
    fleet.store.create(new_run_state("two_steps", "w", None, None, None, time.time()))
    run_id = fleet.store.version("w")[0]
    fleet.redis.zadd(deadlines, {_member("w", 3, 2): time.time() + 60})
    fleet.note_sent(Waiting(("w", run_id, 3, 2, "a", None, {}), "q", time.time()))  # its message on its way
    late = {"k": "activity", "run": run_id, "seq": 3, "attempt": 1, "ok": True, "payload": 1}
    fleet.report_and_begin("w", 3, 1, late, None)
    assert fleet.redis.zrange(deadlines, 0, -1) == [_member("w", 3, 2).encode()]
    fleet.report_and_begin("w", 3, 1, {**late, "ok": False}, 2)  # nor allow anything when it asked for a retry
    assert fleet.redis.zrange(deadlines, 0, -1) == [_member("w", 3, 2).encode()]
    assert fleet.claim("w", 3, 2, run_id)[0]
    fleet.report_and_begin("w", 3, 2, {**late, "attempt": 2}, None)  # the current one retires it
    assert fleet.redis.zcard(deadlines) == 0
    assert not fleet.claim("w", 3, 2, run_id)[0]  # a redelivery of it is stale now


def test_a_deadline_lapses_unless_the_worker_still_holds_the_message(fleet: Fleet) -> None:
    """A live worker that no longer holds a message (a lost broker connection dropped it, or its report
    and retry both failed) must not keep its attempt from being reclaimed."""
    for seq in (1, 2):
        fleet.redis.zadd(fleet.shard_key("wf", "dispatched"), {_member("wf", seq, 1): time.time() + 60})
    fleet.hold([("wf", 1, 1), ("wf", 2, 1)])  # the worker took both messages
    assert fleet.lapsed(time.time()) == []
    time.sleep(0.5)
    fleet.hold([("wf", 2, 1)])  # the worker still holds seq 2's message, not seq 1's
    later = time.time() + LEASE - 0.25
    assert [(lost.seq, lost.attempt) for lost in fleet.lapsed(later)] == [(1, 1)]
    lost = fleet.lapsed(later)[0]
    failure = {"type": "WorkerLost", "message": "lost", "traceback": "", "non_retryable": False}
    assert fleet.reclaim(lost, failure)
    assert not fleet.reclaim(lost, failure)  # exactly one caller gets it
    inbox = [codec.decode(m) for m in fleet.redis.lrange(fleet.store.keys("wf")[2], 0, -1)]
    assert inbox == [{"k": "activity", "seq": 1, "attempt": 1, "ok": False, "payload": failure}]
    assert fleet.redis.zrange(fleet.shard_key("wf", "dispatched"), 0, -1) == [_member("wf", 2, 1).encode()]  # retired
    assert fleet.redis.zscore(fleet.shard_key("wf", "dirty"), "wf") is not None    # and found by the sweep


def test_a_report_that_failed_in_the_fast_path_is_recorded_when_tried_again(fleet: Fleet) -> None:
    """The worker's cached run took the report before Redis refused the append; the report tried again
    must still be recorded (it was dropped as stale, and the run waited forever)."""
    sent: list[tuple[int, int]] = []
    registry = Registry()
    registry.add_workflow(two_steps)
    coordinator = Coordinator(fleet, registry, dispatch=lambda wid, rid, seq, attempt, *_: sent.append((seq, attempt)),
                              wake=lambda *_: None, start_child=lambda *_, **__: None, check_payload=lambda v: v)
    wid = f"fast-{uuid.uuid4().hex[:6]}"
    state = new_run_state("two_steps", wid, None, None, None, time.time())
    fleet.store.create(state)
    fleet.push(wid, {"k": "start"})
    coordinator.run(wid)
    assert sent == [(1, 1)]
    append = fleet.report_and_append
    failures = [redis.ConnectionError("Redis went away")]

    def fails_once(*args: object, **kwargs: object) -> int:
        if failures:
            raise failures.pop()
        return append(*args, **kwargs)

    fleet.report_and_append = fails_once  # type: ignore[method-assign]
    report = AttemptReport(1, 1, {"k": "activity", "run": state.run_id, "seq": 1, "attempt": 1, "ok": True,
                                  "payload": 1})
    with pytest.raises(redis.ConnectionError):
        coordinator.run(wid, report)
    coordinator.run(wid, report)
    assert sent == [(1, 1), (2, 1)]
    history = fleet.store.history(wid)
    assert [e.attrs["seq"] for e in history if e.type == E.ACTIVITY_COMPLETED] == [1]


def test_a_timer_is_armed_by_the_append_that_records_it(fleet: Fleet) -> None:
    """A coordinator that dies right after the append (here: every follow-up fails) cannot lose the
    run's durable timer: it was written in the same atomic step as the `timer_started` event."""

    def sleeper(ctx, seconds: float) -> str:
        ctx.sleep(seconds)
        return "woke"

    registry = Registry()
    registry.add_workflow(sleeper, "sleeper")

    def crash(*args, **kwargs):
        raise RuntimeError("the process died here")

    coordinator = Coordinator(fleet, registry, dispatch=crash, wake=lambda *a: None, start_child=crash,
                              check_payload=lambda v: v)
    fleet.arm = crash  # type: ignore[method-assign]  # nothing may rely on arming after the append
    fleet.store.create(new_run_state("sleeper", "t1", 0.2, None, None, time.time()))
    coordinator.run("t1")
    history = fleet.store.history("t1")
    assert [e.type for e in history][-1] == E.TIMER_STARTED
    assert fleet.redis.zcard(fleet.shard_key("t1", "timers")) == 1
    time.sleep(0.25)
    assert fleet.drain_timers(time.time())[0] == 1
    coordinator.cache.clear()  # as after a crash: a new process picks the run up
    coordinator.run("t1")
    assert fleet.store.load_summary("t1").result == "woke"


def test_a_lost_child_start_and_a_lost_parent_notice_are_recovered_by_their_backups(url: str) -> None:
    """The step that records a child's start, and the step that closes the child, each arm a backup in
    their own append: a process that dies before creating the child, or before telling the parent,
    loses neither."""
    fleet = Fleet(RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}"), lease_seconds=0.1)

    def parent(ctx, _: None) -> str:
        return ctx.execute_child_workflow("child", 2, id="kid")

    def child(ctx, n: int) -> str:
        return f"child got {n}"

    registry = Registry()
    registry.add_workflow(parent, "parent")
    registry.add_workflow(child, "child")
    started: list[str] = []

    def lost(*args, **kwargs):
        raise RuntimeError("the process died here")

    def start_child(c, link, queue, **kw) -> None:  # the real one, minus the wake (this test drives)
        state = new_run_state(c.workflow_type, c.workflow_id, c.input, None, queue, time.time(), parent=link)
        fleet.store.create(state)
        started.append(c.workflow_id)

    dying = Coordinator(fleet, registry, dispatch=lost, wake=lambda *a: None, start_child=lost,
                        check_payload=lambda v: v)
    dying._closed = lost  # type: ignore[method-assign]  # it dies before telling the parent, too
    fleet.store.create(new_run_state("parent", "p1", None, None, None, time.time()))
    dying.run("p1")
    assert fleet.store.load_summary("kid") is None  # the child's creation was lost
    time.sleep(0.25)
    assert fleet.drain_timers(time.time())[0] == 1
    healthy = Coordinator(fleet, registry, dispatch=lost, wake=lambda *a: None, start_child=start_child,
                          check_payload=lambda v: v)
    healthy.run("p1")  # the backup: the parent creates its child now
    assert started == ["kid"]
    dying.run("kid")  # the child completes, and its process dies before telling the parent
    assert fleet.store.load_summary("kid").result == "child got 2"
    assert fleet.store.load_summary("p1").status.is_open
    time.sleep(0.25)
    assert fleet.drain_timers(time.time())[0] >= 1
    healthy.run("kid")  # the backup lands in the child's own inbox: it tells the parent again
    healthy.run("p1")
    assert fleet.store.load_summary("p1").result == "child got 2"
def three_steps(ctx: object, _: object = None) -> str:
    for i in (1, 2, 3):
        ctx.execute_activity("attempts_step", i)  # type: ignore[attr-defined]
    return "done"


@pytest.mark.parametrize(("carried", "result_size"), [(True, 1), (False, 1), (True, CARRY_MAX)],
                         ids=["events carried", "events read", "events too large to carry"])
def test_reports_alternating_between_pool_processes_take_the_fast_path(fleet: Fleet, carried: bool,
                                                                       result_size: int) -> None:
    """Two coordinators (the two processes of a prefork pool) take a run's reports in turn: the one that
    never saw the run loads it, the one whose cached run is behind catches up with the events it missed
    (the activity message says which version it was sent at, and carries the run's latest events when
    they are small: with them, no read of the store; without, one); each report is recorded by the fast
    path, without the inbox or the coordinator lease."""
    sent: list[tuple] = []
    registry = Registry()
    registry.add_workflow(three_steps)

    def coordinator() -> Coordinator:
        return Coordinator(fleet, registry, dispatch=lambda *args, **_: sent.append(args), wake=lambda *_: None,
                           start_child=lambda *_, **__: None, check_payload=lambda v: v)

    first, second = coordinator(), coordinator()
    wid = f"alt-{uuid.uuid4().hex[:6]}"
    state = new_run_state("three_steps", wid, None, None, None, time.time())
    fleet.store.create(state)
    fleet.push(wid, {"k": "start"})
    first.run(wid)
    fast = fleet.report_and_append
    fast_calls: list[int] = []

    def counted(*args: object, **kwargs: object) -> int:
        fast_calls.append(1)
        return fast(*args, **kwargs)

    fleet.report_and_append = counted  # type: ignore[method-assign]
    history, reads = fleet.store.history, []
    fleet.store.history = lambda *a, **k: reads.append(1) or history(*a, **k)  # type: ignore[method-assign]
    marked = fleet.redis.zscore(fleet.shard_key(wid, "dirty"), wid)  # by the start message; a queued report marks again
    for i, process in enumerate((second, first, second), start=1):
        _, run_id, seq, attempt, _, _, options = sent[-1]
        assert (seq, attempt) == (i, 1) and options["_version"] == fleet.store.version(wid)[1]
        assert ("_events" in options) is (seq == 1 or result_size < CARRY_MAX)  # a large result is not carried
        ok = {"k": "activity", "run": run_id, "seq": seq, "attempt": 1, "ok": True, "payload": "x" * result_size}
        assert process.run(wid, AttemptReport(seq, 1, ok, None, False, options["_version"],
                                              options.get("_events") if carried else None))
        assert fleet.redis.llen(fleet.store.keys(wid)[2]) == 0
        assert fleet.redis.zscore(fleet.shard_key(wid, "dirty"), wid) == marked
    assert fast_calls == [1, 1, 1]
    # the second and third reports, each a step behind, read what they missed unless the message carried it
    assert len(reads) == (0 if carried and result_size < CARRY_MAX else 2)
    summary = fleet.store.load_summary(wid)
    assert summary is not None and summary.status.value == "completed" and summary.result == "done"
    # the closing step (a cached run that caught up first) moved the run to its status's index too
    listed = fleet.store.list(workflow.WorkflowFilter(status=workflow.WorkflowStatus.COMPLETED, limit=10_000))
    assert wid in {s.workflow_id for s in listed}
    events = history(wid)
    assert [e.attrs["seq"] for e in events if e.type == E.ACTIVITY_COMPLETED] == [1, 2, 3]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert fleet.redis.zcard(fleet.shard_key(wid, "dispatched")) == 0


def test_a_message_taken_well_before_its_deadline_is_not_renewed_on_its_own(url: str) -> None:
    """The worker's consumer renews the deadline of an attempt whose message it took only when that
    deadline is near (its message waited in the queue): the scheduler's round renews everything the
    worker holds long before a fresh message's deadline, so a fresh one costs no command of its own."""
    from beluga.celery.holds import Holds

    fleet = Fleet(RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}"), lease_seconds=15.0)
    deadlines = fleet.shard_key("w", "dispatched")
    fleet.redis.zadd(deadlines, {_member("w", 1, 1): 100.0, _member("w", 2, 1): 200.0})
    holds = Holds(fleet)
    now = fleet.clock.now()  # deadlines are on the fleet's clock, which a worker's scheduler reads at once
    holds.note(("w", 1, 1), until=now + 15.0)   # sent just now: a lease ahead
    holds.note(("w", 2, 1), until=now + 1.0)    # waited in the queue: its deadline is near
    deadline = time.monotonic() + 5
    while fleet.redis.zscore(deadlines, _member("w", 2, 1)) == 200.0:
        assert time.monotonic() < deadline, "the near deadline was not renewed"
        time.sleep(0.01)
    # renewed a lease ahead of the renewal, which came after `now` (read on the moment set up, not on how
    # late this line runs; 1 s for the clock's re-measurement against Redis)
    assert fleet.redis.zscore(deadlines, _member("w", 2, 1)) >= now + 15.0 - 1.0
    time.sleep(0.1)
    assert fleet.redis.zscore(deadlines, _member("w", 1, 1)) == 100.0


@pytest.mark.parametrize("carried", [[b"\x00not an event"], "not a list", [b"x"] * 0, None])
def test_events_a_foreign_message_carries_are_not_trusted(carried: object) -> None:
    """What an activity message carries is checked before a cached run catches up with it: undecodable
    events, another type, or events that are not exactly the ones missed leave the run to read the store."""
    from beluga.celery.coordinator import _carried_since

    assert _carried_since(3, 4, carried) is None  # type: ignore[arg-type]


def test_carried_events_must_be_the_ones_missed() -> None:
    from beluga import codec
    from beluga.celery.coordinator import _carried_since
    from beluga.core.records import Event

    def enc(*ids: int) -> list[bytes]:
        return [codec.encode_event(Event(i, "signal_received", 1.0, {})) for i in ids]

    assert [e.id for e in _carried_since(3, 5, enc(2, 3, 4, 5)) or []] == [4, 5]   # the tail past version 3
    assert _carried_since(0, 5, enc(2, 3, 4, 5)) is None                            # does not reach back to 1
    assert _carried_since(3, 5, enc(2, 3, 5, 4)) is None                            # not in order
    assert _carried_since(3, 5, enc(7, 8)) is None                                  # not the run's ids


def test_a_result_that_came_past_the_attempts_timeout_is_a_timeout() -> None:
    """Celery's soft time limit is set by the worker's main process, which a loaded machine can make
    late: an attempt that returned after its timeout fails as timed out (its result is not taken), as the
    in-process executor and Temporal decide. Attempt 1 here: no store read for earlier attempts."""
    import time as _time
    from types import SimpleNamespace

    from beluga.celery.attempts import run_attempt
    from beluga.celery.messages import decode
    from beluga.core.steps import ActivityOutcome

    def slow(_: object) -> str:
        _time.sleep(0.06)
        return "late"

    rt = SimpleNamespace(check=lambda value: value, store=None)
    defn = SimpleNamespace(name="slow", call=slow, limit=None, retry=None, options={})
    message, _ = run_attempt(rt, defn, "wf", "run", 1, 1, None, {"timeout": 0.01}, None, None)
    outcome = decode(message)
    assert isinstance(outcome, ActivityOutcome) and not outcome.ok
    assert outcome.payload["type"] == "TimeoutError" and "ran past its 0.01s timeout" in outcome.payload["message"]
    message, _ = run_attempt(rt, defn, "wf", "run", 1, 1, None, {"timeout": 30.0}, None, None)
    assert decode(message).ok  # within its timeout: taken
