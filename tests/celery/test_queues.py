"""Activity queues that no worker consumes, and broker backlogs, with real processes: an attempt that no
worker has taken waits (it is not lost, and burns no retry) until a worker consumes its queue, or fails
by its own `schedule_to_start_timeout`; an attempt of a run that closed never runs; an attempt stuck
behind a backlog longer than the lease is sent again with backoff (not found by reading the broker's
queues), and the copies never run it twice."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from beluga import workflow
from beluga.celery.fleet import Waiting
from beluga.core.records import EventType as E
from beluga.stores.redis import SHARDS
from tests.conftest import Fleet
from tests.fleet import ROOT, WORKER_IMPORTS, Worker, fleet_env, redis_server

IMPORTS = f"{WORKER_IMPORTS},tests.celery.queue_workflows"
LEASE = "1"


def _show(url: str, workflow_id: str) -> str:
    out = subprocess.run([sys.executable, "-m", "beluga", "show", workflow_id, "--executor", "celery"],
                         env=fleet_env(url, BELUGA_IMPORTS=IMPORTS), cwd=str(ROOT), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _commands(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def test_an_attempt_waits_for_a_worker_of_its_queue_or_its_schedule_to_start_timeout(private_fleet) -> None:
    fleet = private_fleet
    for name in ("b1", "b2"):  # `-Q beluga`: they have the code, but do not consume `emails`
        fleet.start_worker(name, BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS=LEASE)
    for w in fleet.workers:
        w.wait_ready()
    r = redis.Redis.from_url(fleet.url)
    ex = fleet.executor()
    tag = uuid.uuid4().hex[:6]
    patient = ex.execute("fleet_email", workflow.WorkflowOptions(id=f"mail-wait-{tag}", input={"to": "a"}))
    hasty = ex.execute("fleet_email", workflow.WorkflowOptions(
        id=f"mail-hasty-{tag}", input={"to": "b", "schedule_to_start": 2.0}))
    with pytest.raises(workflow.WorkflowFailed):
        hasty.result(timeout=30)
    failed = [e for e in ex.describe(hasty.id).history if e.type == E.ACTIVITY_FAILED]
    assert len(failed) == 1 and failed[0].attrs["error"]["type"] == "TimeoutError", failed
    assert "schedule_to_start_timeout" in failed[0].attrs["error"]["message"]
    assert "emails" in failed[0].attrs["error"]["message"]
    scheduled = next(e for e in ex.describe(hasty.id).history if e.type == E.ACTIVITY_SCHEDULED)
    assert scheduled.attrs["schedule_to_start_timeout"] == 2.0   # recorded like the other timeouts
    assert failed[0].timestamp - scheduled.timestamp >= 2.0
    # the patient run waits past three leases: waiting, neither running nor lost
    time.sleep(max(0.0, patient_started(ex, patient.id) + 3.5 * float(LEASE) - time.time()))
    assert patient.status() is workflow.WorkflowStatus.RUNNING
    shown = _show(fleet.url, patient.id)
    assert "attempt 1 waiting for a worker on queue 'emails'" in shown, shown
    history = ex.describe(patient.id).history
    assert [e for e in history if e.type == E.ACTIVITY_FAILED] == []   # no WorkerLost, no retry burnt
    assert [e.attrs["attempt"] for e in history if e.type == E.ACTIVITY_STARTED] == [1]
    assert any("which no live worker consumes" in w.log() for w in fleet.workers)
    assert r.hgetall("test:emails") == {}
    # the broker loses the patient run's message (the timed-out run's stays): sent again once a worker
    # consumes `emails` and finds the queue empty
    lost = [m for m in r.lrange("emails", 0, -1) if patient.id.encode() in m]
    assert len(lost) == 1 and r.llen("emails") == 2
    r.lrem("emails", 1, lost[0])
    # a worker of `emails` joins: the patient run's attempt runs once; the timed-out run's never does
    mail = Worker(fleet_env(fleet.url, BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS=LEASE), "mail",
                  fleet.log_dir, queues="emails")
    fleet.workers.append(mail)
    mail.wait_ready()
    assert patient.result(timeout=30) == "sent to a"
    deadline = time.monotonic() + 20
    assert any("sending it again to queue 'emails'" in w.log() for w in fleet.workers)
    while r.llen("emails") or f"skipping stale attempt 1 of {hasty.id}" not in mail.log():
        assert time.monotonic() < deadline, mail.log()[-3000:]
        time.sleep(0.1)
    assert {k.decode(): int(v) for k, v in r.hgetall("test:emails").items()} == {f"{patient.id}:1": 1}
    assert "queued on 'emails'" not in _show(fleet.url, patient.id)   # closed: waits on nothing


def patient_started(ex: workflow.DurableExecutor, workflow_id: str) -> float:
    return next(e.timestamp for e in ex.describe(workflow_id).history if e.type == E.ACTIVITY_STARTED)


@pytest.fixture
def split_fleet(tmp_path) -> Iterator[Fleet]:
    """A fleet whose broker is a server of its own, apart from the histories: the broker's command
    counts are then those of the broker alone."""
    with redis_server() as broker, redis_server() as histories:
        f = Fleet(broker, tmp_path, redis_url=histories)
        try:
            yield f
        finally:
            f.stop()


def test_a_backlog_longer_than_the_lease_is_sent_again_not_searched(split_fleet) -> None:
    """200 attempts queue up behind one worker of one pool process (about 4 s of work, the lease 1 s):
    the attempts still queued past their deadline are sent again, with backoff (the broker's queues are
    never read: no LRANGE), and every attempt runs once."""
    fleet = split_fleet
    fleet.start_worker("slow", concurrency=1, BELUGA_IMPORTS=IMPORTS, BELUGA_LEASE_SECONDS=LEASE,
                       BELUGA_EAGER_ACTIVITIES="0").wait_ready()
    broker, histories = redis.Redis.from_url(fleet.url), redis.Redis.from_url(fleet.redis_url)
    before = _commands(broker)
    ex = fleet.executor()
    handles = [ex.execute("fleet_steps", workflow.WorkflowOptions(
        id=f"backlog-{i}-{uuid.uuid4().hex[:4]}", input={"steps": 1, "sleep": 0.02})) for i in range(200)]
    most_looks, deadline = 0, time.monotonic() + 120
    while not all(h.status() is workflow.WorkflowStatus.COMPLETED for h in handles[-5:]):
        assert time.monotonic() < deadline
        for shard in range(SHARDS):  # how often the scheduler found attempts still queued past their deadline
            for raw in histories.hvals(f"beluga:{{s{shard}}}:waiting"):
                most_looks = max(most_looks, Waiting.decode(raw).looks)
        time.sleep(0.3)
    for h in handles:
        assert h.result(timeout=120) == 1
    assert most_looks >= 1, "no attempt waited in the queue past its deadline"
    spent = {k: n - before.get(k, 0) for k, n in _commands(broker).items()}
    log = fleet.workers[0].log()
    resent = log.count("sending it again")
    assert spent.get("lrange", 0) == 0, spent
    runs = {k.decode(): int(v) for k, v in histories.hgetall("test:runs").items()}
    assert len(runs) == 200 and set(runs.values()) == {1}, runs
    for h in handles:
        history = ex.describe(h.id).history
        assert [e.attrs["attempt"] for e in history if e.type == E.ACTIVITY_STARTED] == [1]
        assert [e for e in history if e.type == E.ACTIVITY_FAILED] == []
    skipped = log.count("skipping stale attempt")
    print(f"backlog of 200: looked at {most_looks} times at most, {resent} attempts sent again, {skipped} copies "
          f"skipped; broker commands {spent}")
