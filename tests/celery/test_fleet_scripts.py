"""The fleet's scripts (beluga/lua/begin.lua, report.lua, report_and_append.lua, claim.lua, reclaim.lua,
release.lua, drain_timers.lua, sweep.lua, wake.lua, take_wakes.lua) run against a real server through the
`Fleet` methods that call them, one each, with the keys inspected after each call. No workers are started."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from beluga import codec
from beluga.celery.fleet import RESEND_MAX, Fleet, Waiting, resend_delay
from beluga.core.records import Append, Event, WorkflowState, WorkflowStatus
from beluga.stores.redis import INLINE_EVENTS, RedisStore, shard_of

LEASE = 5.0


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Fleet]:
    """A fleet on a key prefix of its own (overrides the session's `fleet` of real workers here)."""
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield Fleet(store, lease_seconds=LEASE)
    store.close()


def _ev(i: int) -> Event:
    return Event(i, "workflow_started" if i == 1 else "signal_received", float(i), {"n": i})


def _start(fleet: Fleet, wid: str = "w", events: int = 3, run_id: str = "r1") -> None:
    fleet.store.create(WorkflowState(wid, run_id, "order", history=tuple(_ev(i) for i in range(1, events + 1))))


def _inbox(fleet: Fleet, wid: str = "w") -> list[bytes]:
    return fleet.redis.lrange(fleet.store.keys(wid)[2], 0, -1)


def _member(wid: str, seq: int, attempt: int) -> bytes:
    return f"{wid}\x00{seq}\x00{attempt}".encode()


def _k(fleet: Fleet, name: str, wid: str = "w") -> str:
    """The fleet's record `name` in the shard of `wid`."""
    return fleet.shard_key(wid, name)


def _same_shard(n: int, like: str = "w") -> list[str]:
    """`n` workflow ids in the shard of `like` (the fleet's per-shard records are then one set of keys)."""
    out, i = [], 0
    while len(out) < n:
        i += 1
        if shard_of(f"{like}-{i}") == shard_of(like):
            out.append(f"{like}-{i}")
    return out


def _in_flight(fleet: Fleet, wid: str, seq: int, attempt: int, heartbeat: bool = False) -> None:
    """An attempt as the fleet records it while it runs: allowed, with a deadline (and, when it promised
    heartbeats, its info)."""
    m = _member(wid, seq, attempt)
    fleet.redis.zadd(_k(fleet, "dispatched"), {m: 1.0})
    if heartbeat:
        fleet.redis.hset(_k(fleet, "running:info"), m, b"info")


def _allowed(fleet: Fleet) -> list[tuple[str, int, int]]:
    """The attempts allowed to run: those with a deadline."""
    out = []
    for m in fleet.redis.zrange(_k(fleet, "dispatched"), 0, -1):
        wid, seq, attempt = m.decode().split("\x00")
        out.append((wid, int(seq), int(attempt)))
    return out


def _traces(fleet: Fleet, member: bytes) -> list[bool]:
    """Whether the attempt `member` still has a deadline, and heartbeat info."""
    return [fleet.redis.zscore(_k(fleet, "dispatched"), member) is not None,
            fleet.redis.hexists(_k(fleet, "running:info"), member)]


# --- begin.lua ----------------------------------------------------------------------------------------
def test_begin_takes_the_lease_and_reads_the_run_without_consuming_the_inbox(fleet: Fleet) -> None:
    _start(fleet)
    fleet.push("w", {"k": "signal", "n": 1})
    fleet.push("w", {"k": "signal", "n": 2})
    begun = fleet.begin("w", ttl=7.0)
    assert begun is not None
    assert (begun.run_id, begun.version, begun.inbox_used, begun.newer) == ("r1", 3, 2, [])
    assert [codec.decode(m)["n"] for m in begun.messages] == [1, 2]
    assert fleet.redis.get(fleet.store.key("w", "lease")) == begun.token.encode()
    assert 6000 < fleet.redis.pttl(fleet.store.key("w", "lease")) <= 7000
    assert len(_inbox(fleet)) == 2


def test_begin_is_refused_while_another_holds_the_lease(fleet: Fleet) -> None:
    _start(fleet)
    first = fleet.begin("w")
    assert first is not None
    assert fleet.begin("w") is None
    assert fleet.redis.get(fleet.store.key("w", "lease")) == first.token.encode()


def test_begin_reads_at_most_limit_messages(fleet: Fleet) -> None:
    _start(fleet)
    for n in range(3):
        fleet.push("w", {"n": n})
    begun = fleet.begin("w", limit=2)
    assert begun is not None and begun.inbox_used == 2
    assert [codec.decode(m)["n"] for m in begun.messages] == [0, 1]


def test_begin_sends_only_the_events_past_the_cached_version(fleet: Fleet) -> None:
    _start(fleet, events=4)
    lease = fleet.store.key("w", "lease")
    got = {}
    for known in (1, 3, 4, 0):
        begun = fleet.begin("w", known_version=known)
        assert begun is not None
        got[known] = [codec.decode_event(e).id for e in begun.newer]
        fleet.redis.delete(lease)
    assert got == {1: [2, 3, 4], 3: [4], 4: [], 0: []}
    fleet.redis.hset(fleet.store.keys("w")[0], "version", 1002)   # more than 1000 behind: reload instead
    begun = fleet.begin("w", known_version=1)
    assert begun is not None and begun.version == 1002 and begun.newer == []


@pytest.mark.parametrize("first, earlier", [(5, False), (INLINE_EVENTS + 2, True)], ids=["stream", "earlier-stream"])
def test_begin_sends_the_events_past_the_cached_version_from_any_stream_entry(
        fleet: Fleet, first: int, earlier: bool) -> None:
    """Past the hash each append is one stream entry (the one that outgrew the hash holds the inline
    events too): begin sends the events past the cached version even when it falls inside an entry. A
    stream of an earlier version (an entry per event) is read alike, with the new entries after it."""
    _start(fleet, events=first)
    events_key = fleet.store.keys("w")[1]
    if earlier:
        entries = fleet.redis.xrange(events_key)
        fleet.redis.delete(events_key)
        for _, fields in entries:
            for name, event in fields.items():
                fleet.redis.xadd(events_key, {"e": event}, id=f"0-{int(name)}")
    version = first
    for size in (2, 4, 1, 3):
        step = tuple(_ev(version + i) for i in range(1, size + 1))
        assert fleet.store.append_one(Append("w", "r1", version, step)) == 0
        version += size
    assert fleet.redis.xlen(events_key) == (first + 4 if earlier else 3)
    for known in range(1, version + 1):
        begun = fleet.begin("w", known_version=known)
        assert begun is not None and begun.version == version
        assert [codec.decode_event(e) for e in begun.newer] == [_ev(i) for i in range(known + 1, version + 1)], known
        fleet.redis.delete(fleet.store.key("w", "lease"))


def test_begin_many_takes_each_lease_on_its_own_and_release_many_gives_them_back(fleet: Fleet) -> None:
    """A wake batch's leases in one pipeline: each run's is taken (or refused) exactly as `begin` would,
    with a token of its own, and given back only with it."""
    for wid in ("a", "b", "c"):
        _start(fleet, wid, events=2)
    fleet.push("a", {"k": "signal", "n": 1})
    held = fleet.begin("b")
    got = fleet.begin_many([("a", 0), ("b", 0), ("c", 1), ("ghost", 0)], ttl=7.0)
    a, b, c, ghost = got
    assert b is None and held is not None                           # b's lease is another coordinator's
    assert a is not None and c is not None and ghost is not None
    assert (a.run_id, a.version, a.inbox_used) == ("r1", 2, 1)
    assert [codec.decode_event(e).id for e in c.newer] == [2]        # past the version it has cached
    assert ghost.run_id is None
    assert len({a.token, c.token, ghost.token, held.token}) == 4
    assert fleet.redis.get(fleet.store.key("a", "lease")) == a.token.encode()
    assert 6000 < fleet.redis.pttl(fleet.store.key("a", "lease")) <= 7000
    assert fleet.release_many([("a", a.token), ("b", "not-mine"), ("c", c.token)]) == [1, 0, 0]
    assert fleet.redis.exists(fleet.store.key("a", "lease"), fleet.store.key("c", "lease")) == 0
    assert fleet.redis.get(fleet.store.key("b", "lease")) == held.token.encode()


def test_begin_on_an_unknown_run_reads_no_run(fleet: Fleet) -> None:
    fleet.push("ghost", {"k": "signal"})
    begun = fleet.begin("ghost")
    assert begun is not None
    assert (begun.run_id, begun.version, begun.inbox_used) == (None, 0, 1)


# --- release.lua --------------------------------------------------------------------------------------
def test_release_frees_the_lease_only_with_its_token_and_counts_the_inbox(fleet: Fleet) -> None:
    _start(fleet)
    begun = fleet.begin("w")
    assert begun is not None
    fleet.push("w", {"k": "signal"})
    assert fleet.release("w", "not-the-token") == 1
    assert fleet.redis.get(fleet.store.key("w", "lease")) == begun.token.encode()
    assert fleet.release("w", begun.token) == 1
    assert fleet.redis.exists(fleet.store.key("w", "lease")) == 0


# --- report.lua ---------------------------------------------------------------------------------------
def test_report_with_the_lease_free_retires_the_attempt_and_begins(fleet: Fleet) -> None:
    _start(fleet)
    _in_flight(fleet, "w", 4, 1)
    fleet.push("w", {"k": "signal"})
    before = time.time()
    begun = fleet.report_and_begin("w", 4, 1, {"k": "activity", "seq": 4}, None, known_version=2)
    assert begun is not None
    assert fleet.redis.get(fleet.store.key("w", "lease")) == begun.token.encode()
    assert [codec.decode(m)["k"] for m in begun.messages] == ["signal", "activity"]   # the report comes last
    assert begun.inbox_used == 2 and [codec.decode_event(e).id for e in begun.newer] == [3]
    assert _allowed(fleet) == []
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2
    assert before <= fleet.redis.zscore(_k(fleet, "dirty"), "w") <= time.time()


def test_report_with_the_lease_held_is_queued_for_its_holder(fleet: Fleet) -> None:
    _start(fleet)
    holder = fleet.begin("w")
    assert holder is not None
    _in_flight(fleet, "w", 4, 1)
    assert fleet.report_and_begin("w", 4, 1, {"k": "activity", "seq": 4}, None) is None
    assert [codec.decode(m)["seq"] for m in _inbox(fleet)] == [4]
    assert fleet.redis.get(fleet.store.key("w", "lease")) == holder.token.encode()
    assert _allowed(fleet) == []
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2
    assert fleet.redis.zscore(_k(fleet, "dirty"), "w") is not None


def test_report_of_a_retry_allows_the_next_attempt(fleet: Fleet) -> None:
    _start(fleet)
    _in_flight(fleet, "w", 4, 1, heartbeat=True)
    before = time.time()
    fleet.report_and_begin("w", 4, 1, {"k": "activity", "seq": 4, "retry_in": 30.0}, 2, heartbeat=True)
    assert _allowed(fleet) == [("w", 4, 2)]
    deadline = fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 2))
    assert before + 30 + LEASE <= deadline <= time.time() + 30 + LEASE
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2


# --- report_and_append.lua ----------------------------------------------------------------------------
def _fast(fleet: Fleet, version: int = 3, run_id: str = "r1", next_attempt: int | None = None,
          allowed: tuple[tuple[int, int], ...] = ()) -> int:
    call = fleet.store.append_call(Append("w", run_id, version, (_ev(version + 1),), updated_at=9.0),
                                   attempts=allowed, dispatch_deadline=77.0)
    assert call is not None
    return fleet.report_and_append(call, 4, 1, {"k": "activity", "seq": 4}, next_attempt)


def test_report_and_append_appends_when_the_run_is_untouched(fleet: Fleet) -> None:
    _start(fleet)
    _in_flight(fleet, "w", 4, 1)
    assert _fast(fleet, allowed=((5, 1),)) == 0
    assert fleet.store.version("w") == ("r1", 4)
    assert [e.id for e in fleet.store.history("w")] == [1, 2, 3, 4]
    assert _inbox(fleet) == [] and fleet.redis.zscore(_k(fleet, "dirty"), "w") is None   # nothing queued
    assert _allowed(fleet) == [("w", 5, 1)]                                                # 4 retired, 5 allowed
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 5, 1)) == 77.0       # the fleet-wide record
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2


@pytest.mark.parametrize("touched", ["lease held", "inbox waiting", "attempt reclaimed", "stale version",
                                     "other run"])
def test_report_and_append_queues_the_report_when_the_run_was_touched(fleet: Fleet, touched: str) -> None:
    """Inputs are recorded in the order they arrived: a report behind a lease holder or waiting messages
    joins them; so does that of an attempt reclaimed meanwhile, or of a run that moved on."""
    _start(fleet)
    _in_flight(fleet, "w", 4, 1)
    if touched == "lease held":
        fleet.redis.set(fleet.store.key("w", "lease"), "someone")
    if touched == "inbox waiting":
        fleet.push("w", {"k": "signal"})
    if touched == "attempt reclaimed":
        fleet.redis.zrem(_k(fleet, "dispatched"), _member("w", 4, 1))
    got = _fast(fleet, version=2 if touched == "stale version" else 3,
                run_id="r0" if touched == "other run" else "r1", next_attempt=2, allowed=((5, 1),))
    assert got == -1
    assert fleet.store.version("w") == ("r1", 3)                                  # nothing appended
    assert codec.decode(_inbox(fleet)[-1]) == {"k": "activity", "seq": 4}        # the report, queued last
    assert fleet.redis.zscore(_k(fleet, "dirty"), "w") is not None
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 5, 1)) is None  # 5 not allowed
    # a current attempt's failed report allows its retry; a reclaimed one's allows nothing
    assert _allowed(fleet) == ([] if touched == "attempt reclaimed" else [("w", 4, 2)])
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2
    if touched == "lease held":
        assert fleet.redis.get(fleet.store.key("w", "lease")) == b"someone"


def test_report_and_append_that_closes_the_run_waits_for_messages_in_the_inbox(fleet: Fleet) -> None:
    """A signal sent as the run closes is recorded before the close: the report goes to the coordinator."""
    _start(fleet)
    _in_flight(fleet, "w", 4, 1)
    fleet.push("w", {"k": "signal"})
    call = fleet.store.append_call(Append("w", "r1", 3, (_ev(4),), WorkflowStatus.COMPLETED, result=1,
                                          updated_at=9.0))
    assert call is not None
    assert fleet.report_and_append(call, 4, 1, {"k": "activity", "seq": 4}, None) == -1
    assert fleet.store.version("w") == ("r1", 3)
    assert [codec.decode(m)["k"] for m in _inbox(fleet)] == ["signal", "activity"]


# --- claim.lua, reclaim.lua, requeue.lua, deadlines ---------------------------------------------------
def _sent(fleet: Fleet, wid: str, seq: int, attempt: int, deadline: float = 1.0, run_id: str = "r1",
          to_start_by: float | None = None, queue: str = "emails") -> Waiting:
    """An attempt as its dispatch and its sender record it: allowed, with a deadline, and waiting for a
    worker on `queue` (its run `run_id` created first, unless it exists)."""
    if fleet.store.version(wid)[0] is None:
        _start(fleet, wid, run_id=run_id)
    fleet.redis.zadd(_k(fleet, "dispatched", wid), {_member(wid, seq, attempt): deadline})
    waiting = Waiting((wid, run_id, seq, attempt, "send", {"to": "a"}, {"queue": queue}), queue, 0.5, to_start_by)
    fleet.note_sent(waiting)
    return waiting


def test_claim_starts_the_allowed_attempt_with_the_last_heartbeat(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 2)
    fleet.redis.hset(fleet.store.key("w", "beats"), "4", codec.encode({"done": 7}))
    before = time.time()
    assert fleet.claim("w", 4, 2, "r1", ttl=20.0) == (True, {"done": 7})
    m = _member("w", 4, 2)
    assert before + 20 <= fleet.redis.zscore(_k(fleet, "dispatched"), m) <= time.time() + 20   # moved
    assert codec.decode(fleet.redis.hget(_k(fleet, "running:info"), m)) == {"run": "r1", "heartbeat_timeout": 20.0}
    fleet.heartbeat("w", 4, 2, 20.0, {"done": 8})
    assert codec.decode(fleet.redis.hget(fleet.store.key("w", "beats"), "4")) == {"done": 8}
    assert fleet.redis.zscore(_k(fleet, "dispatched"), m) >= before + 20


def test_claim_without_heartbeat_details(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1)
    before = time.time()
    assert fleet.claim("w", 4, 1, "r1") == (True, None)
    m = _member("w", 4, 1)
    assert before + LEASE <= fleet.redis.zscore(_k(fleet, "dispatched"), m) <= time.time() + LEASE
    assert _traces(fleet, m) == [True, False]  # no info: it promised no heartbeats
    assert fleet.waiting_attempts("w", [(4, 1)]) == {}  # taken


def test_claim_starts_an_attempt_once_a_duplicate_or_redelivery_is_skipped(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1)
    assert fleet.claim("w", 4, 1, "r1") == (True, None)
    deadline = fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1))
    assert fleet.claim("w", 4, 1, "r1") == (False, None)   # a second copy of the message
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1)) == deadline  # untouched: still running


@pytest.mark.parametrize("allowed", [2, None])
def test_claim_refuses_a_stale_attempt(fleet: Fleet, allowed: int | None) -> None:
    _start(fleet)
    if allowed is not None:  # attempt 1 was reclaimed, attempt 2 allowed
        _sent(fleet, "w", 4, allowed)
    assert fleet.claim("w", 4, 1, "r1", ttl=20.0) == (False, None)
    assert _traces(fleet, _member("w", 4, 1)) == [False] * 2   # not started, nothing written
    assert _allowed(fleet) == ([] if allowed is None else [("w", 4, 2)])


@pytest.mark.parametrize("run", ["closed", "replaced"])
def test_claim_refuses_and_retires_an_attempt_of_a_run_that_closed_or_moved_on(fleet: Fleet, run: str) -> None:
    _sent(fleet, "w", 4, 1)
    if run == "closed":
        fleet.redis.hset(fleet.store.keys("w")[0], "status", "failed")
    else:  # the id's next run (continue-as-new, or a new start after the close)
        fleet.redis.hset(fleet.store.keys("w")[0], "run_id", "r2")
    assert fleet.claim("w", 4, 1, "r1") == (False, None)
    assert _allowed(fleet) == [] and fleet.waiting_attempts("w", [(4, 1)]) == {}


def test_note_sent_brings_the_deadline_forward_to_the_schedule_to_start_deadline(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1, deadline=50.0, to_start_by=20.0)
    _sent(fleet, "w", 5, 1, deadline=10.0, to_start_by=20.0)
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1)) == 20.0
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 5, 1)) == 10.0   # never later
    assert fleet.waiting_attempts("w", [(4, 1), (5, 1), (6, 1)]) == {(4, 1): "emails", (5, 1): "emails"}


def test_hold_renews_only_attempts_still_in_flight(fleet: Fleet) -> None:
    waiting, reported = _member("w", 1, 1), _member("w", 2, 1)
    fleet.redis.zadd(_k(fleet, "dispatched"), {waiting: 50.0})
    before = time.time()
    fleet.hold([("w", 1, 1), ("w", 2, 1)])
    assert before + LEASE <= fleet.redis.zscore(_k(fleet, "dispatched"), waiting) <= time.time() + LEASE
    assert fleet.redis.zscore(_k(fleet, "dispatched"), reported) is None   # not brought back


def test_lapsed_finds_attempts_past_their_deadline_and_tells_those_no_worker_took(fleet: Fleet) -> None:
    for seq in (1, 2):
        fleet.redis.zadd(_k(fleet, "dispatched"), {_member("w", seq, 1): 10.0 + seq})
    fleet.redis.hset(_k(fleet, "running:info"), _member("w", 2, 1), codec.encode({"run": "r1", "heartbeat_timeout": 3}))
    sent = _sent(fleet, "w", 3, 1, deadline=12.0)
    _sent(fleet, "w", 4, 1, deadline=13.0)   # not yet
    lost = fleet.lapsed(12.5)
    assert [(x.seq, x.attempt, x.info, x.deadline, x.waiting) for x in lost] == [
        (1, 1, {}, 12.5, None), (2, 1, {"run": "r1", "heartbeat_timeout": 3}, 12.5, None), (3, 1, {}, 12.5, sent)]


def test_requeue_gives_an_untaken_attempt_a_later_deadline_with_backoff_for_one_caller(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1, deadline=10.0)
    [found] = fleet.lapsed(10.5)
    before = time.time()
    again = fleet.requeue(found, before, resend=True)
    assert again is not None and (again.looks, again.resent) == (1, 1) and again.args == found.waiting.args
    deadline = fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1))
    assert before + LEASE <= deadline <= time.time() + LEASE
    assert fleet.requeue(found, before, resend=True) is None   # another scheduler came first
    [later] = fleet.lapsed(deadline + 0.1)
    assert later.waiting == again
    third = fleet.requeue(later, deadline + 0.1, resend=False)   # no live consumer: it waits on, not resent
    assert third is not None and (third.looks, third.resent) == (2, 1)
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1)) == pytest.approx(deadline + 0.1 + 2 * LEASE)
    assert resend_delay(LEASE, 40) == RESEND_MAX


def test_requeue_never_passes_the_schedule_to_start_deadline_and_retires_attempts_of_closed_runs(
        fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1, deadline=10.0, to_start_by=10.0 + LEASE / 2)
    [found] = fleet.lapsed(10.0)
    assert fleet.requeue(found, 10.0, resend=True) is not None
    assert fleet.redis.zscore(_k(fleet, "dispatched"), _member("w", 4, 1)) == 10.0 + LEASE / 2
    fleet.redis.hset(fleet.store.keys("w")[0], "status", "completed")
    [found] = fleet.lapsed(11.0 + LEASE)
    assert fleet.requeue(found, 11.0 + LEASE, resend=True) is None
    assert _allowed(fleet) == [] and fleet.waiting_attempts("w", [(4, 1)]) == {}


def test_reclaim_drops_the_waiting_mark(fleet: Fleet) -> None:
    _sent(fleet, "w", 4, 1, deadline=10.0, to_start_by=10.0)
    [found] = fleet.lapsed(10.5)
    assert fleet.reclaim(found, {"type": "TimeoutError", "message": "m", "traceback": "", "non_retryable": True})
    assert fleet.waiting_attempts("w", [(4, 1)]) == {} and _allowed(fleet) == []
    assert codec.decode(_inbox(fleet)[-1])["run"] == "r1"   # named by the waiting record
    assert fleet.claim("w", 4, 1, "r1") == (False, None)   # its message, delivered later, does not run


def test_live_queues_are_those_announced_within_their_time_to_live(fleet: Fleet) -> None:
    fleet.announce_queues(["beluga", "emails"], ttl=30.0)
    fleet.announce_queues(["emails"], ttl=1.0)   # never shortens what another worker announced
    fleet.announce_queues(["sms"], ttl=-1.0)
    assert fleet.live_queues() == {"beluga", "emails"}
    assert fleet.live_queues(time.time() + 60) == set()


def test_reclaim_leaves_an_attempt_renewed_since_it_was_found(fleet: Fleet) -> None:
    from beluga.celery.fleet import Lost

    fleet.redis.zadd(_k(fleet, "dispatched"), {_member("w", 4, 1): 10.0})
    lost = fleet.lapsed(11.0)[0]
    fleet.hold([("w", 4, 1)])  # its worker renewed it meanwhile
    failure = {"type": "WorkerLost", "message": "gone", "traceback": "", "non_retryable": False}
    assert fleet.reclaim(lost, failure) is False
    assert _inbox(fleet) == [] and _allowed(fleet) == [("w", 4, 1)]
    assert fleet.reclaim(Lost("w", 4, 1, {}, time.time() + LEASE + 1), failure) is True


def test_reclaim_claims_once_queues_the_failure_and_retires_the_attempt(fleet: Fleet) -> None:
    from beluga.celery.fleet import Lost

    failure = {"type": "WorkerLost", "message": "gone", "traceback": "", "non_retryable": False}
    for seq, attempt in ((4, 1), (5, 1)):
        fleet.redis.zadd(_k(fleet, "dispatched"), {_member("w", seq, attempt): 1.0})
    fleet.redis.zadd(_k(fleet, "dispatched"), {_member("w", 4, 2): 99.0})  # seq 4 was retried meanwhile
    first, second = Lost("w", 4, 1, {"run": "r1"}, 1.0), Lost("w", 5, 1, {"run": "r1"}, 1.0)
    assert fleet.reclaim(first, failure) is True
    assert _allowed(fleet) == [("w", 5, 1), ("w", 4, 2)]  # attempt 2 of seq 4 stays allowed
    assert fleet.reclaim(second, failure) is True
    assert fleet.reclaim(second, failure) is False  # claimed once
    assert _allowed(fleet) == [("w", 4, 2)]
    reports = [codec.decode(m) for m in _inbox(fleet)]
    assert [(r["seq"], r["attempt"], r["ok"], r["run"]) for r in reports] == [(4, 1, False, "r1"), (5, 1, False, "r1")]
    assert "retry_in" not in reports[0]  # the coordinator decides under the retry policy
    assert fleet.redis.zscore(_k(fleet, "dirty"), "w") is not None


# --- drain_timers.lua, sweep.lua, wake.lua, take_wakes.lua -------------------------------------------------
def test_drain_timers_moves_due_messages_into_inboxes_and_wakes_their_shard(fleet: Fleet) -> None:
    a, b, c = _same_shard(3)
    shard = shard_of(a)
    fleet.arm(a, 10.0, {"k": "timer", "n": 1})
    fleet.arm(b, 11.0, {"k": "timer", "n": 2})
    fleet.arm(a, 12.0, {"k": "timer", "n": 3})
    fleet.arm(c, 99.0, {"k": "timer", "n": 4})
    assert fleet.drain_timers(20.0, limit=2) == (2, [shard])        # the caller sends the shard's wake task
    assert [codec.decode(m)["n"] for m in _inbox(fleet, a)] == [1]
    assert [codec.decode(m)["n"] for m in _inbox(fleet, b)] == [2]
    assert fleet.drain_timers(20.0) == (1, [])                      # that task is on its way
    assert [codec.decode(m)["n"] for m in _inbox(fleet, a)] == [1, 3]
    assert _inbox(fleet, c) == [] and fleet.redis.zcard(_k(fleet, "timers", a)) == 1   # not due yet
    assert fleet.redis.zrange(_k(fleet, "dirty", a), 0, -1, withscores=True) == sorted(
        [(a.encode(), 20.0), (b.encode(), 20.0)])
    assert sorted(fleet.take_wakes(shard)) == sorted([a, b])
    assert fleet.take_wakes(shard) == [] and fleet.drain_timers(20.0) == (0, [])


def test_sweep_wakes_only_dirty_runs_with_waiting_messages_and_no_lease(fleet: Fleet) -> None:
    orphan, held, done, fresh = _same_shard(4)
    dirty = _k(fleet, "dirty", orphan)
    for wid in (orphan, held, done, fresh):
        fleet.redis.zadd(dirty, {wid: 100.0 if wid != fresh else 199.5})
        if wid != done:
            fleet.redis.rpush(fleet.store.keys(wid)[2], b"m")
    fleet.redis.set(fleet.store.key(held, "lease"), "tok")
    assert fleet.sweep(200.0, grace=2.0) == (1, [shard_of(orphan)])
    assert fleet.redis.smembers(_k(fleet, "wake", orphan)) == {orphan.encode()}
    assert dict(fleet.redis.zrange(dirty, 0, -1, withscores=True)) == {
        orphan.encode(): 200.0, held.encode(): 200.0, fresh.encode(): 199.5}   # `done` is forgotten
    assert fleet.sweep(200.0, grace=2.0) == (0, [])                # nothing waited long enough since


def test_sweep_sends_a_wake_task_again_when_the_one_on_its_way_was_lost(fleet: Fleet) -> None:
    (wid,) = _same_shard(1)
    assert fleet.wake([wid]) == [shard_of(wid)]
    assert fleet.sweep(200.0) == (0, [])                           # a wake task is on its way
    fleet.redis.delete(_k(fleet, "waking", wid))                   # ... until its lease lapses: it was lost
    assert fleet.sweep(200.0) == (0, [shard_of(wid)])


def test_sweep_looks_at_most_at_limit_runs_per_shard(fleet: Fleet) -> None:
    wids = _same_shard(3)
    for n, wid in enumerate(wids):
        fleet.redis.zadd(_k(fleet, "dirty", wid), {wid: 10.0 + n})
        fleet.redis.rpush(fleet.store.keys(wid)[2], b"m")
    assert fleet.sweep(100.0, limit=2)[0] == 2
    assert fleet.sweep(100.0, limit=2)[0] == 1
    assert sorted(fleet.take_wakes(shard_of(wids[0]))) == sorted(wids)


def test_wake_sends_one_task_per_shard_until_its_set_is_empty(fleet: Fleet) -> None:
    x, y, z = _same_shard(3)
    shard = shard_of(x)
    other = next(f"o{i}" for i in range(100) if shard_of(f"o{i}") != shard)
    assert sorted(fleet.wake([x, other])) == sorted([shard, shard_of(other)])
    assert fleet.wake([y, z]) == []                                # the shard's task will take them too
    assert 0 < fleet.redis.pttl(_k(fleet, "waking", x)) <= LEASE * 1000
    assert len(fleet.take_wakes(shard, 2)) == 2
    assert len(fleet.take_wakes(shard, 2)) == 1
    assert fleet.redis.exists(_k(fleet, "waking", x)) == 1         # held until the task finds the set empty
    assert fleet.take_wakes(shard, 2) == [] and fleet.redis.exists(_k(fleet, "waking", x)) == 0
    assert fleet.wake([x]) == [shard]                              # a later wake sends a new task
    assert fleet.take_wakes(shard_of(other)) == [other]


def test_a_lingering_wake_task_keeps_the_lease_through_an_empty_set(fleet: Fleet) -> None:
    """`keep`: the task looks again shortly, so a run woken meanwhile sends no task of its own; the task's
    last look (without `keep`) lets go."""
    x, y = _same_shard(2)
    shard = shard_of(x)
    assert fleet.wake([x]) == [shard]
    assert fleet.take_wakes(shard, keep=True) == [x]
    assert fleet.take_wakes(shard, keep=True) == []
    assert fleet.redis.exists(_k(fleet, "waking", x)) == 1
    assert fleet.wake([y]) == []                                   # the lingering task takes it
    assert fleet.take_wakes(shard) == [y]
    assert fleet.take_wakes(shard) == [] and fleet.redis.exists(_k(fleet, "waking", x)) == 0
    assert fleet.wake([x]) == [shard]


# --- start.lua, push.lua: a client's calls take effect once, and only on an open run ---------------------
def _new_state(wid: str, run_id: str) -> WorkflowState:
    return WorkflowState(wid, run_id, "order", history=(_ev(1),), created_at=5.0, updated_at=5.0)


def test_start_queues_the_start_message_and_a_retry_of_the_same_request_finds_its_run(fleet: Fleet) -> None:
    assert fleet.start_run(_new_state("w", "r1"), "req-1") == "r1"
    assert [codec.decode(m) for m in _inbox(fleet)] == [{"k": "start"}]
    assert fleet.redis.zscore(_k(fleet, "dirty"), "w") == 5.0
    # the same request again (its answer was lost): the run it made, nothing created or queued twice
    assert fleet.start_run(_new_state("w", "r2"), "req-1") == "r1"
    assert fleet.store.version("w") == ("r1", 1) and len(_inbox(fleet)) == 1
    from beluga.core.errors import WorkflowAlreadyStarted

    with pytest.raises(WorkflowAlreadyStarted):
        fleet.start_run(_new_state("w", "r3"), "req-2")


def test_signal_with_start_creates_or_signals_in_one_step_and_once_per_request(fleet: Fleet) -> None:
    from beluga.celery.fleet_scripts import PushReply

    sig = {"k": "signal", "name": "go"}
    # no run: created, the signal queued right after its start message
    assert fleet.signal_with_start(_new_state("w", "r1"), sig, "req-1") == ("r1", None)
    assert [codec.decode(m) for m in _inbox(fleet)] == [{"k": "start"}, sig]
    # its retry finds the run it made, queues nothing again
    assert fleet.signal_with_start(_new_state("w", "r2"), sig, "req-1") == ("r1", None)
    assert len(_inbox(fleet)) == 2
    # another caller: the open run gets its signal, no run is created
    assert fleet.signal_with_start(_new_state("w", "r3"), sig, "req-2") == ("r1", PushReply.QUEUED_WAKE)
    assert fleet.store.version("w") == ("r1", 1) and len(_inbox(fleet)) == 3
    # its retry after the run closed: recognised, not a new run holding the signal twice
    closing = Append("w", "r1", 1, (Event(2, "workflow_completed", 6.0, {}),), WorkflowStatus.COMPLETED)
    assert fleet.store.append_one(closing, inbox_used=3) == 0
    assert fleet.signal_with_start(_new_state("w", "r4"), sig, "req-2") == ("r1", PushReply.QUEUED_BEFORE)
    assert fleet.store.version("w") == ("r1", 2)
    # a new caller on the closed id: a new run
    assert fleet.signal_with_start(_new_state("w", "r5"), sig, "req-3") == ("r5", None)


def test_push_queues_only_for_an_open_run_and_once_per_request(fleet: Fleet) -> None:
    assert fleet.push_input("nobody", {"k": "cancel"}, "q0") == -1
    _start(fleet)
    assert fleet.push_input("w", {"k": "signal", "name": "go"}, "q1") == 2  # queued; send the wake task
    assert fleet.push_input("w", {"k": "signal", "name": "go"}, "q1") == 1  # a retry: not queued again
    assert fleet.push_input("w", {"k": "signal", "name": "go"}, None) == 0  # queued; the task is on its way
    assert fleet.take_wakes(shard_of("w")) == ["w"]
    assert len(_inbox(fleet)) == 2
    assert fleet.redis.ttl(fleet.store.key("w", "requests")) > 0
    fleet.redis.hset(fleet.store.keys("w")[0], "status", "completed")
    assert fleet.push_input("w", {"k": "signal", "name": "go"}, "q2") == -2
    assert fleet.push_input("w", {"k": "signal", "name": "go"}, "q1") == 1  # it did take effect
    assert len(_inbox(fleet)) == 2


def test_an_append_that_closes_the_run_is_refused_while_unread_messages_wait(fleet: Fleet) -> None:
    from beluga.core.records import WorkflowStatus

    _start(fleet)
    fleet.push("w", {"k": "signal", "name": "a"})
    fleet.push("w", {"k": "signal", "name": "b"})  # arrived after the coordinator read the inbox
    closing = Append("w", "r1", 3, (Event(4, "signal_received", 4.0, {}), Event(5, "workflow_completed", 4.0, {})),
                     status=WorkflowStatus.COMPLETED)
    assert fleet.store.append_one(closing, inbox_used=1) is None
    assert fleet.store.version("w") == ("r1", 3) and len(_inbox(fleet)) == 2
    assert fleet.store.append_one(closing, inbox_used=2) == 0  # every waiting message recorded: closes
    assert fleet.store.load_summary("w").status is WorkflowStatus.COMPLETED
    # an append that leaves the run open is not held up by later messages
    _start(fleet, "v")
    fleet.push("v", {"k": "signal", "name": "a"})
    assert fleet.store.append_one(Append("v", "r1", 3, (Event(4, "signal_received", 4.0, {}),))) == 1
