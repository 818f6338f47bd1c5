"""Waking parked runs in batches: a shard's wake task takes its woken runs' leases, loads and appends in
pipelines, then runs each woken run's next activity itself (recorded as dispatched, with a lease
deadline that the process renews); a worker killed with -9 in the middle of such a batch loses nothing
and duplicates nothing."""

from __future__ import annotations

import collections
import threading
import time
import uuid

import redis

from beluga import workflow
from beluga.core.records import EventType as E
from tests.celery.test_faults import _check_history, _diagnose
from tests.celery.test_parked import _idle


def _woken(r: redis.Redis) -> list[tuple[str, int, str, int]]:
    """(workflow id, attempt, Celery task id, pid) of each attempt of fleet_woken_step as it started."""
    out = []
    for raw in r.lrange("test:woken", 0, -1):
        wid, attempt, task_id, pid = raw.decode().rsplit(":", 3)
        out.append((wid, int(attempt), task_id, int(pid)))
    return out


def _park(ex: workflow.DurableExecutor, r: redis.Redis, n: int, sleep: float) -> list:
    handles = [ex.execute("fleet_wake_then_step", workflow.WorkflowOptions(
        id=f"wb-{i}-{uuid.uuid4().hex[:6]}", input={"sleep": sleep})) for i in range(n)]
    _idle(r, ex)
    assert all(ex.store.version(h.id)[1] == 1 for h in handles)  # parked after their first event
    return handles


class _TaskEvents:
    """The task events the workers send (Flower's view), collected by a thread from one subscription that
    stays open until `stop` (a receiver that timed out and subscribed again would miss what was published
    in between; kombu's consume loop looks at `should_stop` every second on the same subscription)."""

    def __init__(self, app) -> None:
        self.seen: list[dict] = []
        self._receiver = None
        self._thread = threading.Thread(target=self._capture, args=(app,), daemon=True)
        self._thread.start()

    def _capture(self, app) -> None:
        with app.connection_for_read() as conn:
            self._receiver = app.events.Receiver(conn, handlers={"*": self.seen.append})
            self._receiver.should_stop = False
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)


def test_a_wake_batch_runs_its_runs_next_activities_itself(private_fleet) -> None:
    fleet = private_fleet
    fleet.start_worker("w1", concurrency=1).wait_ready()
    ex = fleet.executor()
    r = redis.Redis.from_url(fleet.url)
    handles = _park(ex, r, 60, 0.0)
    captured = _TaskEvents(ex.app)
    events = captured.seen
    time.sleep(0.5)  # the subscription is in place
    for i, h in enumerate(handles):
        ex.signal(h.id, workflow.Signal("go", i))
    assert [h.result(timeout=60) for h in handles] == [i + 1 for i in range(len(handles))]
    deadline = time.monotonic() + 10   # each attempt shows as a task that succeeded (sent in batches)
    while sum(e.get("type") == "task-succeeded" and e.get("result") is not None for e in events) < len(handles):
        assert time.monotonic() < deadline, collections.Counter(e.get("type") for e in events)
        time.sleep(0.1)
    captured.stop()
    received = {e["uuid"]: e for e in events if e.get("type") == "task-received"}
    succeeded = [e for e in events if e.get("type") == "task-succeeded" and e["uuid"] in received]
    assert sum(received[e["uuid"]]["name"] == "activity:fleet_woken_step" for e in succeeded) == len(handles)
    trace = _woken(r)
    assert sorted(wid for wid, *_ in trace) == sorted(h.id for h in handles)  # each attempt ran once
    per_task = collections.Counter(task_id for _, _, task_id, _ in trace)
    assert max(per_task.values()) > 1, per_task  # attempts of several runs ran in one wake task
    for h in handles:
        _check_history(ex.describe(h.id).history)


def test_a_worker_killed_in_the_middle_of_a_wake_batch(private_fleet) -> None:
    """The kill lands while the batch runs its runs' activities (recorded as dispatched with a lease
    deadline by the batch's appends): the lost attempts are dispatched again within the lease (3 s here)
    by the survivor, as attempt 2; nothing is lost and no event is recorded twice; only a lost attempt
    ran twice."""
    fleet = private_fleet
    doomed = fleet.start_worker("doomed", concurrency=1).wait_ready()
    ex = fleet.executor()
    r = redis.Redis.from_url(fleet.url)
    handles = _park(ex, r, 40, 0.4)  # long enough that the kill, right after the check below, lands mid-attempt
    for i, h in enumerate(handles):
        ex.signal(h.id, workflow.Signal("go", i))
    deadline = time.monotonic() + 30
    # a wake task has run several runs' attempts, and an attempt is running (started, its effect not made)
    while not (r.llen("test:woken") > r.hlen("test:runs") >= 2
               and max(collections.Counter(task_id for _, _, task_id, _ in _woken(r)).values()) > 1):
        assert time.monotonic() < deadline, _woken(r)
        time.sleep(0.005)
    doomed.kill9()
    before_kill = _woken(r)
    # several runs' attempts ran in one wake task: the kill landed in the middle of a batch's attempts
    assert max(collections.Counter(task_id for _, _, task_id, _ in before_kill).values()) > 1, before_kill
    started_before_kill = len(before_kill)
    fleet.start_worker("survivor", concurrency=2).wait_ready()
    try:
        results = [h.result(timeout=90) for h in handles]
    except TimeoutError:
        raise AssertionError(_diagnose(ex, handles, fleet)) from None
    assert results == [i + 1 for i in range(len(handles))]
    assert started_before_kill < len(handles)  # the kill came before the batch was through
    runs = {k.decode(): int(v) for k, v in r.hgetall("test:runs").items()}
    effects = {k.decode() for k in r.smembers("test:effects")}
    lost = []
    for h in handles:
        state = ex.describe(h.id)
        _check_history(state.history)
        seq = next(e.attrs["seq"] for e in state.history if e.type == E.ACTIVITY_SCHEDULED)
        key = f"{h.id}:{state.run_id}:{seq}"
        failed = [e for e in state.history if e.type == E.ACTIVITY_FAILED]
        assert all(e.attrs["error"]["type"] == "WorkerLost" for e in failed), failed
        if failed:
            lost.append(h.id)
        else:
            assert runs.get(key) == 1, (h.id, runs.get(key))  # never run twice unless its attempt was lost
        assert key in effects, key
    assert lost, "the kill hit no attempt in flight"
    attempts = collections.defaultdict(list)
    for wid, attempt, _, _ in _woken(r):
        attempts[wid].append(attempt)
    # a lost attempt died running ([1, 2]) or before it started ([2]: picked by the batch, not yet run)
    assert all(attempts[wid] in ([1, 2], [2]) for wid in lost), {wid: attempts[wid] for wid in lost}
    assert all(attempts[h.id] == [1] for h in handles if h.id not in lost)


# --- the batch itself, no worker ----------------------------------------------------------------------
# A registry of their own: importing the workers' workflow module here would register its workflows in
# this process, and the other tests' clients would then take their runs' first steps themselves.
def _wait_signal(ctx: workflow.WorkflowContext, _: object = None) -> str:
    return f"got {ctx.receive_signal('go').receive()}"


def _wake_then_step(ctx: workflow.WorkflowContext, _: object = None) -> int:
    return ctx.execute_activity("wb_step", {"i": ctx.receive_signal("go").receive()})


def _coordinator(redis_url: str, sent: list | None = None, woken: list | None = None, cache_size: int = 256):
    from beluga.celery.coordinator import Coordinator
    from beluga.celery.fleet import Fleet
    from beluga.core.definitions import Registry
    from beluga.runs import payload_checker
    from beluga.stores.redis import RedisStore

    registry = Registry()
    registry.add_workflow(_wait_signal, "wb_wait_signal")
    registry.add_workflow(_wake_then_step, "wb_wake_then_step")
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    fleet = Fleet(store, lease_seconds=5.0)
    return Coordinator(fleet, registry, dispatch=lambda *a, **k: (sent if sent is not None else []).append(a),
                       wake=lambda wid, q: (woken if woken is not None else []).append(wid),
                       start_child=lambda *a, **k: None, check_payload=payload_checker(1 << 20),
                       cache_size=cache_size)


def test_a_batch_steps_each_run_and_leaves_what_it_cannot_finish_to_the_one_by_one_path(redis_url: str) -> None:
    """No worker: the coordinator's batch itself, on a real server. A run whose lease another coordinator
    holds is left to it; a run another writer advanced between the batch's read and its append (its
    append refused) is re-read and stepped again, under the lease the batch holds; messages for a run that
    does not exist are dropped; every other run takes its step in the batch's pipelines."""
    from beluga.celery import messages
    from beluga.core.records import Append, Event
    from beluga.core.steps import SignalReceived
    from beluga.runs import new_run_state

    coordinator = _coordinator(redis_url)
    fleet, store = coordinator.fleet, coordinator.store
    wids = [f"b{i}" for i in range(6)]
    for wid in wids:
        fleet.start_run(new_run_state("wb_wait_signal", wid, None, None, None, time.time()))
    coordinator.run_many(wids)
    assert [store.version(w)[1] for w in wids] == [1] * 6 and all(store.load_summary(w).status.is_open for w in wids)
    coordinator.cache.clear()  # evicted, as most of a large wake are: the batch loads them
    for i, wid in enumerate(wids):
        fleet.push_input(wid, messages.encode(SignalReceived("go", i, None)))
    fleet.push("ghost", messages.encode(SignalReceived("go", 0, None)))
    held = fleet.begin(wids[0])            # another coordinator's
    advanced = wids[1]
    load_many = store.load_many

    append_many = store.append_many
    refused: list[str] = []

    def racing_load_many(ids: list[str]) -> list:
        got = load_many(ids)               # then another writer appends to one run before the batch does
        other = Event(2, "signal_received", time.time(), {"name": "other", "payload": 1, "sender_id": None})
        assert store.append_one(Append(advanced, store.version(advanced)[0] or "", 1, (other,),
                                       updated_at=time.time())) is not None
        return got

    def noting_append_many(calls: list) -> list:
        got = append_many(calls)
        refused.extend(c.workflow_id for c, left in zip(calls, got, strict=True) if left is None)
        return got

    store.load_many = racing_load_many     # type: ignore[method-assign]
    store.append_many = noting_append_many  # type: ignore[method-assign]
    coordinator.run_many([*wids, "ghost"])
    assert refused == [advanced]
    assert held is not None and store.load_summary(wids[0]).status.is_open          # left to the holder
    assert len(store.redis.lrange(store.keys(wids[0])[2], 0, -1)) == 1
    for i, wid in enumerate(wids[1:], start=1):
        state = store.load(wid)
        assert state is not None and state.result == f"got {i}", (wid, state)
        _check_history(state.history)
    assert [e.attrs.get("name") for e in store.load(advanced).history if e.type == E.SIGNAL_RECEIVED] == ["other", "go"]
    assert store.redis.exists(store.keys("ghost")[2]) == 0
    assert fleet.redis.exists(*[store.key(w, "lease") for w in wids[1:]]) == 0      # every lease given back
    store.close()


def test_a_batch_larger_than_the_cache_leaves_no_closed_instance_in_it(redis_url: str) -> None:
    """The batch's runs live outside the cache until their steps are recorded; putting them back must not
    evict (and close) a run of the same batch that is then put back closed: its activity's report would
    find a dead instance, record the outcome and nothing after it, and the run would never close."""
    from beluga.celery import messages
    from beluga.celery.report import AttemptReport
    from beluga.core.steps import ActivityOutcome, SignalReceived
    from beluga.runs import new_run_state

    sent: list[tuple] = []
    coordinator = _coordinator(redis_url, sent=sent, cache_size=3)
    fleet, store = coordinator.fleet, coordinator.store
    wids = [f"c{i}" for i in range(8)]
    for wid in wids:
        fleet.start_run(new_run_state("wb_wake_then_step", wid, None, None, None, time.time()))
    coordinator.run_many(wids)             # parked; the last three stay cached, the oldest of the cache first
    for i, wid in enumerate(wids):
        fleet.push_input(wid, messages.encode(SignalReceived("go", i, None)))
    coordinator.run_many(wids)             # the runs it loads come first, and would push the cached ones out
    assert len(sent) == len(wids) and len(coordinator.cache) <= 3
    for run in coordinator.cache.values():
        assert run.instance is not None and run.instance._greenlet is not None  # not closed
    for wid, run_id, seq, attempt, _name, arg, options in sent:   # each attempt's report, as its worker sends it
        message = messages.encode(ActivityOutcome(seq, attempt, True, arg["i"] + 1), run_id)
        coordinator.run(wid, AttemptReport.of(seq, attempt, message, None, False, options))
    for i, wid in enumerate(wids):
        state = store.load(wid)
        assert state is not None and state.result == i + 1, (wid, [e.type for e in state.history] if state else None)
        _check_history(state.history)
    store.close()
