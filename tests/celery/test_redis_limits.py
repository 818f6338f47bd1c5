"""Redis at its limits, with real processes (issue 20): a full Redis (`maxmemory` reached with
`noeviction`) and a frozen one (its process stopped with SIGSTOP, then continued), while runs are in
flight on two real `celery worker`s sharing it as broker and history store.

A full Redis is an outage of writes, not a crash: the workers' main and pool processes live through it
(same PIDs), clients get `ServiceUnavailable` saying the call did not take effect, reads (describe,
list, counts) are answered, and once memory is freed every run completes, none twice, each listed.
A frozen Redis holds no call past its bound: client calls end in `ServiceUnavailable` within
BELUGA_CLIENT_RETRY_SECONDS plus one socket timeout, `result(timeout=t)` within t and a second, and
the workers carry on after SIGCONT. Run with `-s` to see the figures.
"""

from __future__ import annotations

import json
import os
import re
import signal as signals
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from beluga import workflow
from beluga.core.errors import ServiceUnavailable
from beluga.executors.base import WorkflowHandle
from tests.celery import test_outages
from tests.celery.test_outages import (
    STEP_SLEEP,
    STEPS,
    Client,
    OutageFleet,
    check_runs,
    in_flight,
    ready,
    signal_all,
    start_runs,
    wait_closed,
)
from tests.timing import bounded_by

fleets = test_outages.fleets  # the fixture: fleets of real workers on a restartable redis-server
OOM_LINE = re.compile(r"OutOfMemoryError|out of memory|> 'maxmemory'")


def pids(fleet: OutageFleet) -> dict[str, tuple[int, list[int]]]:
    """Each worker's main process and its pool processes."""
    return {w.name: (w.proc.pid, sorted(w.pool_pids())) for w in fleet.workers}


def executor(fleet: OutageFleet, **settings: Any) -> workflow.DurableExecutor:
    return workflow.new("celery", workflow.Config(extra={**fleet.settings, **settings}))


def timed(call: Any) -> tuple[float, Any]:
    """(seconds it took, what it returned or raised)."""
    began = time.monotonic()
    try:
        got: Any = call()
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        got = exc
    return time.monotonic() - began, got


def listed_everywhere(ex: Any, fleet: OutageFleet) -> tuple[set[str], set[str]]:
    """(every run in Redis, found by its run hash; every run the listing shows)."""
    r = fleet.history.client()
    existing = {k.decode().split(":", 2)[2].removesuffix(":run") for k in r.scan_iter("beluga:{s*}:*:run")}
    shown = {s.workflow_id for s in ex.store.list(workflow.WorkflowFilter(limit=10_000))}
    return existing, shown


def test_a_full_redis_is_an_outage_not_a_crash(fleets) -> None:
    """Runs in flight when Redis fills up (a ballast key, then `maxmemory` below what is used, with
    `noeviction`) for longer than three leases; clients call meanwhile; then memory is freed."""
    fleet = fleets()
    ready(fleet, "a", "b")
    ex = executor(fleet, client_retry_seconds=1.0)
    client = Client(ex)
    steps, collectors = start_runs(client, 24, 6, "oom")
    signal_all(client, collectors, data=1, stop=False)
    time.sleep(0.6)  # work in flight: attempts running, reports on their way
    before = pids(fleet)
    log_sizes = fleet.log_sizes()
    r = fleet.history.client()
    r.config_set("maxmemory-policy", "noeviction")
    ballast = [f"test:ballast:{i}" for i in range(64)]  # 8 MB in small values: no large query buffer
    r.mset({key: b"x" * (128 << 10) for key in ballast})
    full_at = time.time()
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - (4 << 20))  # full while the ballast stays
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        r.set("test:probe", b"1")

    # --- while Redis refuses writes ---
    refused_starts: dict[str, ServiceUnavailable] = {}
    for i in range(4):
        wid = f"oom-late-{i}-{uuid.uuid4().hex[:6]}"
        took, got = timed(lambda wid=wid: ex.execute("fleet_steps", workflow.WorkflowOptions(
            id=wid, input={"steps": STEPS, "sleep": STEP_SLEEP}, request_id=f"start:{wid}")))
        assert isinstance(got, ServiceUnavailable), got
        assert got.may_have_taken_effect is False and "out of memory" in str(got), got
        assert took < bounded_by(1.0), took  # client_retry_seconds (the default, 10 s, is past the bound)
        refused_starts[wid] = got
    took, got = timed(lambda: ex.signal(collectors[0], workflow.Signal("s", "refused", request_id="refused")))
    assert isinstance(got, ServiceUnavailable) and got.may_have_taken_effect is False, got
    # reads are answered: describe, the listing, the counts, a result wait's status reads
    assert ex.describe(steps[0]).workflow_id == steps[0]
    existing, shown = listed_everywhere(ex, fleet)
    assert existing == shown and set(steps + collectors) <= shown
    assert sum(ex.store.counts().values()) == len(shown)
    with pytest.raises(TimeoutError):
        ex.get_handle(collectors[0]).result(timeout=0.5)
    time.sleep(max(0.0, 3 * float(fleet.env["BELUGA_LEASE_SECONDS"]) - (time.time() - full_at)))
    assert pids(fleet) == before, "a worker process died or was replaced while Redis was full"
    oom_logged = {name: len(OOM_LINE.findall(text)) for name, text in _logs_since(fleet, log_sizes).items()}

    # --- memory freed: the careful client starts the refused runs again, with their request ids ---
    r.delete(*ballast)
    r.config_set("maxmemory", 0)
    freed_at = time.time()
    for wid in refused_starts:
        client.start("fleet_steps", wid, {"steps": STEPS, "sleep": STEP_SLEEP})
    signal_all(client, collectors, data=1, stop=True, first=1)
    closed_at = wait_closed(client, [*steps, *refused_starts, *collectors], fleet)
    rep = check_runs(client, fleet, [*steps, *refused_starts], collectors)
    existing, shown = listed_everywhere(ex, fleet)
    open_runs, attempts, _ = in_flight(rep.histories, full_at)
    figures = {"scenario": "redis full (noeviction)", "runs": rep.runs, "completed": rep.completed,
               "duplicates": len(rep.duplicates), "lost_signals": len(rep.lost_signals),
               "open_at_fault": open_runs, "attempts_in_flight": attempts, "oom_lines_logged": oom_logged,
               "full_s": round(freed_at - full_at, 1), "all_closed_after_freed_s": round(closed_at - freed_at, 2),
               "starts_refused": len(refused_starts), "listed": len(shown), "existing": len(existing),
               "same_pids": pids(fleet) == before}
    print(f"\nREDIS LIMITS {json.dumps(figures)}")
    assert not rep.duplicates and not rep.lost_signals and not rep.missing_effects
    assert rep.completed == rep.runs
    assert existing == shown, existing ^ shown
    assert open_runs > 0 and attempts > 0, "the fault hit no work in flight"
    assert sum(oom_logged.values()) > 0, "no worker met the full Redis"
    assert pids(fleet) == before
    assert not any("Unrecoverable error" in w.log() for w in fleet.workers)


def test_a_frozen_redis_holds_no_call_past_its_bound(fleets) -> None:
    """Redis (broker and histories) stopped with SIGSTOP for ~6 s while runs are in flight: every client
    call ends within its bound, and the workers carry on after SIGCONT."""
    socket_timeout, retry = 1.0, 2.0
    fleet = fleets(BELUGA_REDIS_SOCKET_TIMEOUT=str(socket_timeout), BELUGA_REDIS_CONNECT_TIMEOUT="1")
    ready(fleet, "a", "b")
    ex = executor(fleet, client_retry_seconds=retry, redis_socket_timeout=socket_timeout,
                  redis_connect_timeout=1.0)
    client = Client(ex)
    steps, collectors = start_runs(client, 16, 4, "frozen")
    time.sleep(0.6)
    before = pids(fleet)
    calls = {
        "execute by name": lambda: ex.execute("fleet_steps", workflow.WorkflowOptions(
            id=f"frozen-late-{uuid.uuid4().hex[:6]}", input={"steps": 1}, request_id="late")),
        "signal": lambda: ex.signal(collectors[0], workflow.Signal("s", "frozen", request_id="frozen")),
        "describe": lambda: ex.describe(steps[0]),
        "result(timeout=2)": lambda: WorkflowHandle(ex, steps[0], "").result(timeout=2),
    }
    results: dict[str, tuple[float, Any]] = {}
    frozen_at = time.time()
    os.kill(fleet.history.proc.pid, signals.SIGSTOP)
    try:
        threads = [threading.Thread(target=lambda n=n, c=c: results.__setitem__(n, timed(c))) for n, c in
                   calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        time.sleep(max(0.0, 6.0 - (time.time() - frozen_at)))
    finally:
        os.kill(fleet.history.proc.pid, signals.SIGCONT)
    thawed_at = time.time()
    shown = {name: (round(took, 2), type(got).__name__) for name, (took, got) in results.items()}
    bound = retry + socket_timeout + 2.0  # a try under way when the retry time runs out ends in its timeout
    for name in ("execute by name", "signal", "describe"):
        took, got = results[name]
        assert isinstance(got, ServiceUnavailable), (name, got)
        assert retry * 0.9 <= took <= bound, (name, took)
    assert results["signal"][1].may_have_taken_effect is True  # sent, and no answer: it may have
    assert results["execute by name"][1].may_have_taken_effect is False  # the name's check never answered
    took, got = results["result(timeout=2)"]
    assert isinstance(got, TimeoutError) and took <= 2.0 + 1.5, (took, got)
    signal_all(client, collectors, data=1, stop=True)
    closed_at = wait_closed(client, steps + collectors, fleet)
    rep = check_runs(client, fleet, steps, collectors)
    open_runs, attempts, _ = in_flight(rep.histories, frozen_at)
    figures = {"scenario": "redis frozen (SIGSTOP)", "calls": shown, "runs": rep.runs, "completed": rep.completed,
               "duplicates": len(rep.duplicates), "open_at_fault": open_runs, "attempts_in_flight": attempts,
               "frozen_s": round(thawed_at - frozen_at, 1), "all_closed_after_thaw_s": round(closed_at - thawed_at, 2)}
    print(f"\nREDIS LIMITS {json.dumps(figures)}")
    assert not rep.duplicates and not rep.lost_signals and not rep.missing_effects
    assert rep.completed == rep.runs
    assert open_runs > 0 and attempts > 0, "the fault hit no work in flight"
    assert pids(fleet) == before


def _logs_since(fleet: OutageFleet, sizes: dict[str, int]) -> dict[str, str]:
    out = {}
    for w in fleet.workers:
        with open(w.log_path, "rb") as fh:
            fh.seek(sizes.get(w.name, 0))
            out[w.name] = fh.read().decode(errors="replace")
    return out
