"""Durability: what a worker says about the history Redis's persistence, history writes confirmed by
replicas (`BELUGA_APPEND_REPLICAS`), and a failover to a replica while workflows run."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from beluga import workflow
from beluga.celery.app import check_history_redis
from beluga.celery.coordinator import Coordinator
from beluga.celery.fleet import Fleet, Waiting
from beluga.celery.report import AttemptReport
from beluga.core.definitions import Registry
from beluga.core.records import Append
from beluga.core.records import EventType as E
from beluga.runs import new_run_state
from beluga.stores.redis import RedisStore
from tests.celery.test_faults import _check_history, _diagnose
from tests.fleet import ServerProcess, Worker, fleet_env, free_port, redis_server
from tests.timing import bounded_by


def _steps(ctx: workflow.WorkflowContext, n: int) -> int:
    retry = workflow.RetryPolicy(max_attempts=0, initial_interval=0.05, max_interval=0.5)
    return sum(ctx.execute_activity("step", i, retry=retry) for i in range(n))


def _coordinator(store: RedisStore, sent: list[tuple]) -> Coordinator:
    """A coordinator in this process, with a registry of its own (registering in the process-wide one
    would let this test process take the first steps of other tests' runs), noting what it dispatches."""
    registry = Registry()
    registry.add_workflow(_steps, "steps")
    registry.add_activity(lambda i: i + 1, "step")
    fleet = Fleet(store)

    def dispatch(*a: Any) -> None:  # as the runtime sends one: marked waiting for a worker, whose claim takes it
        sent.append(a)
        fleet.note_sent(Waiting(tuple(a[:7]), "beluga", time.time()))

    return Coordinator(fleet, registry, dispatch=dispatch, wake=lambda *a: None,
                       start_child=lambda *a, **k: None, check_payload=lambda v: v)


@pytest.fixture(scope="module")
def lone_server() -> Iterator[str]:
    """A server without replicas (and without persistence)."""
    with redis_server() as url:
        yield url


# --- persistence, as a worker starts -------------------------------------------------------------------
def test_worker_warns_when_the_history_redis_persists_nothing(fleet) -> None:
    """The session fleet's server runs with `appendonly no` and `save ""`."""
    log = fleet.workers[0].log()
    warnings = [line for line in log.splitlines() if "persists nothing" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], log[-3000:]


def test_persistence_that_cannot_be_checked_is_said_at_info(lone_server: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A managed Redis may deny or rename CONFIG: the worker says so and starts all the same."""
    admin = redis.Redis.from_url(lone_server)
    admin.execute_command("ACL", "SETUSER", "noconfig", "on", "nopass", "~*", "+@all", "-config")
    denied = redis.Redis.from_url(lone_server, username="noconfig", password="")
    with caplog.at_level(logging.INFO, logger="beluga.celery"):
        check_history_redis(denied, lone_server)
    [record] = [r for r in caplog.records if r.name == "beluga.celery"]
    assert record.levelno == logging.INFO
    assert "could not check the eviction policy and persistence" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="beluga.celery"):
        check_history_redis(redis.Redis(port=1, retry=Retry(NoBackoff(), 0)), "redis://127.0.0.1:1/0")  # unreachable
    assert "could not check" in caplog.text


# --- writes that replicas must confirm -----------------------------------------------------------------
def test_a_write_no_replica_confirms_fails_with_a_clear_error_within_the_timeout(lone_server: str) -> None:
    store = RedisStore(lone_server, prefix=f"d{uuid.uuid4().hex[:8]}", append_replicas=1,
                       append_replicas_timeout=0.3)
    fleet = Fleet(store)
    wid = "no-replica"
    state = new_run_state("waiter", wid, None, None, None, time.time())
    started = time.monotonic()
    with pytest.raises(workflow.ReplicationError, match="only 0 of 1 replicas confirmed it within 0.3s") as err:
        store.create(state)
    assert 0.25 < time.monotonic() - started < bounded_by(0.3)  # WAIT waited its timeout, then gave up
    assert (err.value.acked, err.value.wanted) == (0, 1)
    assert store.load(wid) is not None  # it is on the primary: only its durability is in doubt
    event = workflow.Event(len(state.history) + 1, E.SIGNAL_RECEIVED, time.time(),
                           {"name": "go", "payload": 1, "sender_id": None})
    with pytest.raises(workflow.ReplicationError):
        store.append([Append(wid, state.run_id, len(state.history), (event,))])
    with pytest.raises(workflow.ReplicationError):
        fleet.push(wid, {"k": "signal", "name": "go", "payload": 1})
    assert store.redis.llen(store.keys(wid)[2]) == 1


def test_the_client_is_told_and_the_run_still_starts(lone_server: str) -> None:
    """`execute` and `signal` raise ReplicationError, but the run created on the primary is started
    all the same (its start message queued, a worker woken): should the primary survive, nothing stalls."""
    prefix = f"d{uuid.uuid4().hex[:8]}"
    ex = workflow.new("celery", workflow.Config(extra={
        "broker_url": lone_server, "redis_url": lone_server, "key_prefix": prefix, "append_replicas": 1,
        "append_replicas_timeout": 0.2}))
    wid = f"told-{uuid.uuid4().hex[:6]}"
    inbox, dirty = ex.store.keys(wid)[2], f"{ex.store.tag(wid)}:dirty"
    with pytest.raises(workflow.ReplicationError):
        ex.execute("waiter", workflow.WorkflowOptions(id=wid))  # a name no worker has announced: accepted
    assert ex.describe(wid).status == workflow.WorkflowStatus.RUNNING
    assert ex.store.redis.llen(inbox) == 1 and ex.store.redis.zscore(dirty, wid)  # started: its first step waits
    with pytest.raises(workflow.ReplicationError):
        ex.signal(wid, workflow.Signal("go", "now"))
    assert ex.store.redis.llen(inbox) == 2


# --- what a failover leaves behind ----------------------------------------------------------------------
def test_a_step_whose_write_failed_leaves_no_trace_in_the_cache(lone_server: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A report whose write fails (Redis unreachable mid-failover) is reported again by the task's
    retry; the coordinator must not keep the cached run that already took it in, or the retry is
    taken for a duplicate and the step is lost."""
    store = RedisStore(lone_server, prefix=f"d{uuid.uuid4().hex[:8]}")
    sent: list[tuple] = []
    coordinator = _coordinator(store, sent)
    fleet = coordinator.fleet
    wid = "cached"
    store.create(new_run_state("steps", wid, 2, None, None, time.time()))
    coordinator.run(wid)
    [(_, run_id, seq, attempt, *_)] = sent
    report = AttemptReport(seq, attempt, {"k": "activity", "run": run_id, "seq": seq, "attempt": attempt,
                                          "ok": True, "payload": 1})
    real = fleet.report_and_append

    def unreachable(*args: object, **kwargs: object) -> int:
        raise redis.ConnectionError("primary gone")

    monkeypatch.setattr(fleet, "report_and_append", unreachable)
    with pytest.raises(redis.ConnectionError):
        coordinator.run(wid, report)
    monkeypatch.setattr(fleet, "report_and_append", real)
    coordinator.run(wid, report)
    history = store.history(wid)
    assert [e.attrs["seq"] for e in history if e.type == E.ACTIVITY_COMPLETED] == [seq]
    assert len(sent) == 2  # the second step was dispatched


def test_a_late_report_of_a_superseded_attempt_does_not_revoke_its_successor(lone_server: str) -> None:
    """After a failover, a worker may report an attempt that the new primary already took for lost
    and dispatched again (here: its report failed, and the task's retry ran it again). That report is
    stale; it must not retire the seq, or the new attempt is refused at its start and the run stalls."""
    store = RedisStore(lone_server, prefix=f"d{uuid.uuid4().hex[:8]}")
    sent: list[tuple] = []
    coordinator = _coordinator(store, sent)
    fleet = coordinator.fleet
    wid = "superseded"
    store.create(new_run_state("steps", wid, 1, None, None, time.time()))
    coordinator.run(wid)
    [(_, run_id, seq, _, *_)] = sent
    lost = {"type": "WorkerLost", "message": "lost", "traceback": "", "non_retryable": False}
    from beluga.celery.fleet import Lost

    assert fleet.reclaim(Lost(wid, seq, 1, {"run": run_id}, time.time() + 3600), lost)
    coordinator.run(wid)  # records the failure; the retry policy's backoff arms a timer for attempt 2
    time.sleep(0.1)
    fleet.drain_timers(time.time())
    coordinator.run(wid)
    assert [a[3] for a in sent] == [1, 2]
    late = {"k": "activity", "run": run_id, "seq": seq, "attempt": 1, "ok": True, "payload": 1}
    coordinator.run(wid, AttemptReport(seq, 1, late))
    assert fleet.claim(wid, seq, 2, run_id)[0], "attempt 2 was revoked by the late report of attempt 1"
    coordinator.run(wid, AttemptReport(seq, 2, {**late, "attempt": 2}))
    assert store.load_summary(wid).status == workflow.WorkflowStatus.COMPLETED


# --- failover ----------------------------------------------------------------------------------------
def test_failover_to_a_replica_keeps_every_acknowledged_step(tmp_path: Path) -> None:
    """A primary and a replica (AOF on both) hold the histories, a separate Redis is the broker, and the
    workers require one replica to confirm each history write. While 20 workflows run, the replica loses
    its link for a moment, the primary is killed with -9, the replica promoted and the workers restarted
    against it (as an operator or Sentinel would). Every step acknowledged before the kill must be in the
    promoted history, every run must complete, and no event may be recorded twice. (Without
    BELUGA_APPEND_REPLICAS this test fails: the steps acknowledged during the gap are lost.) The
    workers, on a history Redis with AOF, must not warn about persistence."""
    aof = ("--appendonly", "yes", "--appendfsync", "everysec")
    primary = ServerProcess(tmp_path / "primary", *aof)
    replica = ServerProcess(tmp_path / "replica", *aof, "--replicaof", "127.0.0.1", str(primary.port))
    standby: ServerProcess | None = None
    workers: list[Worker] = []
    with redis_server() as broker:
        try:
            replica.wait_replica_in_sync()
            durable = {"BELUGA_APPEND_REPLICAS": "1", "BELUGA_APPEND_REPLICAS_TIMEOUT": "2",
                       "BELUGA_TEST_CALLS_URL": broker}  # activities note their attempts where the kill can't reach
            workers = [Worker(fleet_env(broker, primary.url, **durable), f"d{i}", tmp_path) for i in range(2)]
            for w in workers:
                w.wait_ready()
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": broker, "redis_url": primary.url,
                                                               "append_replicas": 1}))
            ids = [f"failover-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
            for wid in ids:
                ex.execute("fleet_noted_steps", workflow.WorkflowOptions(id=wid, input={"steps": 6, "sleep": 0.05}))
            calls = redis.Redis.from_url(broker)
            deadline = time.monotonic() + 60
            while calls.scard("test:ran") < 30:  # some steps done, most still ahead
                assert time.monotonic() < deadline, "the fleet made no progress"
                time.sleep(0.02)
            # The replica loses its link (pointed at a port where nothing listens, it keeps its data), as in
            # a partition or when it lags: what the primary writes now reaches no replica, so with WAIT none
            # of it is acknowledged.
            replica.client().execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
            time.sleep(0.3)
            primary.kill9()
            replica.client().execute_command("REPLICAOF", "NO", "ONE")
            for w in workers:
                w.stop()
            logs = "".join(w.log() for w in workers)
            assert "persists nothing" not in logs and "RDB snapshots only" not in logs
            assert "not acknowledged as durable" not in logs  # so each attempt ran after a confirmed append

            # An attempt runs only once the append that started it was acknowledged: it must have survived.
            promoted = RedisStore(replica.url)
            states = {wid: promoted.load(wid) for wid in ids}
            assert all(s is not None for s in states.values()), "a run acknowledged to its client was lost"
            for raw in calls.smembers("test:ran"):
                wid, seq, attempt = raw.decode().split("\0")
                started = {(e.attrs["seq"], e.attrs["attempt"]) for e in states[wid].history
                           if e.type == E.ACTIVITY_STARTED}
                assert (int(seq), int(attempt)) in started, f"{wid}: attempt {attempt} of {seq} ran; its start was lost"
            assert sum(s.status.is_open for s in states.values()) >= 5, "the kill hit no work in flight"

            standby = ServerProcess(tmp_path / "standby", *aof, "--replicaof", "127.0.0.1", str(replica.port))
            standby.wait_replica_in_sync()
            workers += [Worker(fleet_env(broker, replica.url, **durable), f"after{i}", tmp_path) for i in range(2)]
            for w in workers[2:]:
                w.wait_ready()
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": broker, "redis_url": replica.url,
                                                               "append_replicas": 1}))
            handles = [ex.get_handle(wid) for wid in ids]
            try:
                results = [h.result(timeout=90) for h in handles]
            except TimeoutError:
                fleet = SimpleNamespace(url=replica.url, workers=workers)
                raise AssertionError(_diagnose(ex, handles, fleet)) from None
            assert results == [sum(range(1, 7))] * 20
            for wid in ids:
                _check_history(ex.describe(wid).history)
        finally:
            for w in workers:
                w.stop()
            for server in (primary, replica, standby):
                if server is not None:
                    server.stop()
