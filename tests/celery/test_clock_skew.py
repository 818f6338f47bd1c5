"""A worker whose wall clock is 120 s ahead of, or behind, the rest of the fleet's, with work in flight on
both workers. Its clock is really skewed: Debian's libfaketime is preloaded into the worker (main and
prefork pool processes alike, which the test checks from inside its activities; a sitecustomize works
around its broken `time.sleep`, see tests/celery/faketime/); the Redis server, the other worker and the
client keep the true time. Every deadline, lease, timer and event time comes
from the history Redis's clock (beluga/celery/clock.py), so: no live attempt is taken for lost, every
activity runs once, no timer and no retry fires early, and `ctx.now()` measures a sleep right across
workers. Before that clock, this test saw 15-30 live attempts reclaimed as WorkerLost (runs failed), 174-196
executions for 160 calls, 15-25 of 40 timers early, retries early or 120 s late, and `ctx.now()` measure
a 3 s sleep as -117 s or +121 s."""

from __future__ import annotations

import glob
import os
import time
import uuid
from pathlib import Path

import pytest
import redis

from beluga import workflow
from beluga.core.records import EventType as E
from tests.fleet import ROOT, WORKER_IMPORTS

RUNS = 40
STEPS = 3          # activities before the sleep (one more after it)
NAP = 3.0          # the durable sleep of each run, in seconds
ACTIVITY_SECONDS = 0.25  # long enough for attempts to be in flight when a scheduler looks
EPSILON = 0.05     # how far two processes' readings of the fleet's clock may differ (half a round trip each)
LATE = 20.0        # how late a timer may fire on a loaded 2-core machine (the skew would be 120 s)
IMPORTS = f"{WORKER_IMPORTS},tests.celery.clock_workflows"


def _faketime(skew: str) -> dict[str, str]:
    """The environment that makes a process's wall clock read `skew` off (its monotonic clock is left
    alone, as NTP would leave it)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        if os.environ.get("CI"):
            raise RuntimeError("libfaketime is required in CI (scripts/test.sh installs it)")
        pytest.skip("Debian's libfaketime is not installed (apt-get install libfaketime)")
    # its sitecustomize works around libfaketime's broken clock_nanosleep (time.sleep), see there
    path = os.pathsep.join([str(Path(__file__).parent / "faketime"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {"LD_PRELOAD": found[0], "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": path}


@pytest.mark.parametrize(("skew", "eager"), [(120, "0"), (-120, "8")],
                         ids=["120 s ahead, every attempt a message", "120 s behind, eager activities"])
def test_a_worker_with_a_skewed_clock_changes_nothing(private_fleet, skew: int, eager: str) -> None:
    fleet = private_fleet
    healthy = fleet.start_worker("healthy", BELUGA_IMPORTS=IMPORTS, CLOCK_TEST_WORKER="healthy",
                                 BELUGA_EAGER_ACTIVITIES=eager)
    skewed = fleet.start_worker("skewed", BELUGA_IMPORTS=IMPORTS, CLOCK_TEST_WORKER="skewed",
                                BELUGA_EAGER_ACTIVITIES=eager, **_faketime(f"{skew:+d}s"))
    healthy.wait_ready()
    skewed.wait_ready()
    skewed_pool = set(skewed.pool_pids())
    ex = fleet.executor()
    handles = [ex.execute("clock_steps", workflow.WorkflowOptions(
        id=f"skew-{i}-{uuid.uuid4().hex[:6]}", input={"steps": STEPS, "sleep": ACTIVITY_SECONDS, "nap": NAP,
                                                      "flaky": i % 4 == 0})) for i in range(RUNS)]
    results, unfinished = {}, []
    deadline = time.monotonic() + 90
    for h in handles:
        try:
            results[h.id] = h.result(timeout=max(0.1, deadline - time.monotonic()))
        except (TimeoutError, workflow.WorkflowFailed) as exc:
            unfinished.append(f"{h.id}: {exc}")
    states = {h.id: ex.describe(h.id) for h in handles}
    calls = redis.Redis.from_url(fleet.url)
    runs = {k.decode(): int(v) for k, v in calls.hgetall("clock:runs").items()}
    started = {k.decode(): float(v) for k, v in calls.hgetall("clock:started").items()}

    # --- what happened, in figures (printed for the record, then asserted) -------------------------
    lost = [(wid, e.attrs["seq"], e.attrs["attempt"], e.attrs["error"]["type"]) for wid, s in states.items()
            for e in s.history if e.type == E.ACTIVITY_FAILED and e.attrs["error"]["type"] != "RuntimeError"]
    timers = []  # (armed at, fired at, duration), on the recorded clock
    early_retries, late_retries = [], []
    for s in states.values():
        armed = {e.attrs["seq"]: e for e in s.history if e.type == E.TIMER_STARTED}
        for e in s.history:
            if e.type == E.TIMER_FIRED:
                t = armed[e.attrs["seq"]]
                timers.append((t.timestamp, e.timestamp, t.attrs["duration"]))
            if e.type == E.ACTIVITY_FAILED and e.attrs["error"]["type"] == "RuntimeError":
                key = f"{s.workflow_id}:{s.run_id}:{e.attrs['seq']}:{e.attrs['attempt'] + 1}"
                due = e.timestamp + e.attrs["retry_in"]
                if key in started and started[key] < due - EPSILON:
                    early_retries.append((key, due - started[key]))
                if key in started and started[key] > due + LATE:
                    late_retries.append((key, started[key] - due))
    ran = [r for res in results.values() for r in res["ran"]]
    on_skewed = [r for r in ran if r["worker"] == "skewed"]
    slept = [res["slept"] for res in results.values()]
    print(f"\nskew {skew:+d}s, eager {eager}: {sum(runs.values())} executions for {len(runs)} calls "
          f"({RUNS * (STEPS + 1)} + {RUNS // 4} retried), {len(lost)} attempts reclaimed, "
          f"{sum(1 for a, f, d in timers if f - a < d - EPSILON)}/{len(timers)} timers early, "
          f"{len(early_retries)} retries early and {len(late_retries)} late, ctx.now() measured a {NAP:g}s sleep as "
          f"{min(slept, default=0):.2f}..{max(slept, default=0):.2f}s, {len(unfinished)} unfinished, "
          f"{len(on_skewed)}/{len(ran)} executions on the skewed worker")

    assert not unfinished, (unfinished, [(s.workflow_id, [(e.id, e.type, e.timestamp, e.attrs.get("seq"),
                                                            e.attrs.get("attempt")) for e in s.history[-4:]])
                                         for s in states.values() if s.status.is_open])
    # the skew is real, in the skewed worker's pool processes, and it took its share of the work
    assert {r["worker"] for r in ran} == {"healthy", "skewed"}
    assert len(on_skewed) >= 10, len(on_skewed)
    assert all(abs(r["skew"] - skew) < 5 for r in on_skewed), [r["skew"] for r in on_skewed]
    assert all(abs(r["skew"]) < 5 for r in ran if r["worker"] == "healthy")
    assert {r["pid"] for r in on_skewed} <= skewed_pool
    # timers were armed in steps taken on the skewed worker (the step that records the activity before
    # the sleep is taken by the process that ran it, whenever it can)
    assert sum(1 for res in results.values() if res["ran"][STEPS - 1]["worker"] == "skewed") >= 3

    # no live attempt was taken for lost: the only failures are the deliberate first attempts
    assert not lost, lost
    # every activity ran once (the deliberately failed ones twice: their retry), none more
    expected = {}
    for wid, s in states.items():
        seqs = [e.attrs["seq"] for e in s.history if e.type == E.ACTIVITY_SCHEDULED]
        for seq in seqs:
            expected[f"{wid}:{s.run_id}:{seq}"] = 2 if s.input["flaky"] and seq == seqs[0] else 1
    assert runs == expected
    assert sum(expected.values()) == RUNS * (STEPS + 1) + RUNS // 4
    # no timer fired early, nor much late, on the recorded clock; no retry started before its delay
    assert len(timers) == RUNS
    assert all(d - EPSILON <= f - a <= d + LATE for a, f, d in timers), [(f - a, d) for a, f, d in timers]
    assert not early_retries, early_retries
    assert not late_retries, late_retries
    assert sum(1 for k in started if k.endswith(":2")) == RUNS // 4
    # ctx.now() across steps run by either worker: never backwards, and a sleep measured right
    for res in results.values():
        nows = res["nows"]
        assert all(b >= a - EPSILON for a, b in zip(nows, nows[1:], strict=False)), nows
        assert NAP - EPSILON <= res["slept"] <= NAP + LATE, res["slept"]
