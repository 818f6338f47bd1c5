"""Outages with real processes (issue 9): Redis restarted cleanly and killed with -9 (append-only file
on), the broker alone cut for 20 s while clients keep calling, workers killed during an outage, and a
superseded attempt's message redelivered by a short visibility timeout. No mocks.

Every scenario checks that every run completes within a bounded wait, that no history holds a
duplicate event (an activity attempt started or finished twice, a signal recorded twice), that every
activity's idempotency key has its effect recorded, that every signal a client saw accepted is
recorded exactly once, and that the fault hit work in flight. Clients retry the way an application
without request ids would: a retried `execute` that meets `WorkflowAlreadyStarted` got through the
first time; a signal that raised is sent again with a new payload (it may or may not have been
recorded: only the accepted ones must be, once); a `cancel` that meets `WorkflowNotRunning` is done.

Figures (faults, runs, recovery times, log lines during outages) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal as signals
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.core.errors import WorkflowNotRunning
from beluga.core.records import CLOSING_EVENTS
from beluga.core.records import EventType as E
from beluga.stores.redis import SHARDS
from tests.fleet import RedisProcess, Worker, fleet_env

WARNING_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [^\]]*: (?:WARNING|ERROR|CRITICAL)/", re.MULTILINE)
LEASE = 2.0           # BELUGA_LEASE_SECONDS in these tests (the default, 15 s, stays untouched)
STEPS = 10            # activity steps per `fleet_steps` run
STEP_SLEEP = 0.05     # seconds each step's activity sleeps, so that faults land mid-activity
SETTLE = 90.0         # bound on the wait for every run to close after the last fault


# --- the fleet ---------------------------------------------------------------------------------------
class OutageFleet:
    """Workers and a client over a broker Redis and a history Redis (the same server or two)."""

    def __init__(self, log_dir: Path, broker: RedisProcess, history: RedisProcess, **env: str) -> None:
        self.log_dir = log_dir
        self.broker = broker
        self.history = history
        self.env = fleet_env(broker.url, history.url, **{"BELUGA_LEASE_SECONDS": str(LEASE), **env})
        self.workers: list[Worker] = []
        self.settings = {"broker_url": broker.url, "redis_url": history.url,
                         "lease_seconds": float(self.env["BELUGA_LEASE_SECONDS"])}

    def start_worker(self, name: str, concurrency: int = 2) -> Worker:
        worker = Worker(self.env, name, self.log_dir, concurrency)
        self.workers.append(worker)
        return worker

    def executor(self) -> workflow.DurableExecutor:
        # A short client retry time, so that calls during an outage fail and the careful client's own
        # retries (with the same request id) are exercised too.
        return workflow.new("celery", workflow.Config(extra={**self.settings, "client_retry_seconds": 0.5}))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def log_sizes(self) -> dict[str, int]:
        return {w.name: w.log_path.stat().st_size for w in self.workers}

    def log_since(self, sizes: dict[str, int]) -> dict[str, dict[str, int]]:
        """Per worker, what it logged since `sizes` at WARNING and above: records and tracebacks."""
        out = {}
        for w in self.workers:
            with open(w.log_path, "rb") as fh:
                fh.seek(sizes.get(w.name, 0))
                text = fh.read().decode(errors="replace")
            out[w.name] = {"records": len(WARNING_RECORD.findall(text)),
                           "tracebacks": text.count("Traceback (most recent call last)")}
        return out


@pytest.fixture
def fleets(tmp_path: Path):
    made: list[OutageFleet] = []
    servers: list[RedisProcess] = []

    def make(shared: bool = True, **env: str) -> OutageFleet:
        history = RedisProcess(tmp_path, "history").start()
        servers.append(history)
        broker = history
        if not shared:
            broker = RedisProcess(tmp_path, "broker").start()
            servers.append(broker)
        fleet = OutageFleet(tmp_path, broker, history, **env)
        made.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for f in made:
            f.stop()
        for s in servers:
            s.kill9()


# --- a careful client --------------------------------------------------------------------------------
class Client:
    """Calls the fleet and retries on errors by looking at the state, as an application would."""

    def __init__(self, ex: workflow.DurableExecutor) -> None:
        self.ex = ex
        self.errors: collections.Counter[str] = collections.Counter()
        self.sent: dict[str, list[str]] = collections.defaultdict(list)
        self.accepted: dict[str, list[str]] = collections.defaultdict(list)
        self.lock = threading.Lock()

    def _again(self, what: str, deadline: float) -> None:
        with self.lock:
            self.errors[what] += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} kept failing for {SETTLE}s")
        time.sleep(0.1)

    def start(self, name: str, workflow_id: str, input: Any = None) -> None:
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                self.ex.execute(name, workflow.WorkflowOptions(id=workflow_id, input=input,
                                                               request_id=f"start:{workflow_id}"))
                return
            except Exception:
                self._again("execute", deadline)

    def signal(self, workflow_id: str, tag: str) -> bool:
        """One signal `s`, retried with the same request id until it is accepted (a retry of a try that
        took effect is recorded no second time); False when the run closed meanwhile."""
        deadline = time.monotonic() + SETTLE
        payload = f"{tag}:0"
        with self.lock:
            self.sent[workflow_id].append(payload)
        for _ in range(1000):
            try:
                self.ex.signal(workflow_id, workflow.Signal("s", payload, request_id=f"{workflow_id}:{tag}"))
            except WorkflowNotRunning:
                return False
            except Exception:
                self._again("signal", deadline)
                continue
            with self.lock:
                self.accepted[workflow_id].append(payload)
            return True
        raise AssertionError("unreachable")

    def cancel(self, workflow_id: str) -> None:
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                self.ex.cancel(workflow_id)
                return
            except WorkflowNotRunning:
                return
            except Exception:
                self._again("cancel", deadline)

    def summary(self, workflow_id: str) -> workflow.WorkflowState:
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                return self.ex.summary(workflow_id)  # type: ignore[attr-defined]
            except Exception:
                self._again("describe", deadline)

    def closed(self, workflow_id: str) -> bool:
        return not self.summary(workflow_id).status.is_open


# --- faults and what they hit ------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    down_at: float
    up_at: float = 0.0
    logged: dict[str, dict[str, int]] = field(default_factory=dict)   # per worker, while down


def redis_fault(fleet: OutageFleet, server: RedisProcess, kind: str, down_for: float = 0.0,
                during: Callable[[], None] | None = None) -> Fault:
    before = fleet.log_sizes()
    fault = Fault(kind, time.time())
    server.kill9() if kind == "kill9" else server.stop()
    if during is not None:
        during()
    rest = down_for - (time.time() - fault.down_at)
    if rest > 0:
        time.sleep(rest)
    fault.logged = fleet.log_since(before)  # before the server is back: what the outage itself caused
    server.start()
    fault.up_at = time.time()
    return fault


# --- checks ------------------------------------------------------------------------------------------
def wait_closed(client: Client, ids: Iterable[str], fleet: OutageFleet, timeout: float = SETTLE) -> float:
    """Wait until every run is closed; returns when the last one closed (time.time())."""
    open_ = set(ids)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        open_ = {wid for wid in open_ if not client.closed(wid)}
        if open_:
            time.sleep(0.2)
    if open_:
        raise AssertionError(f"{len(open_)} runs still open {timeout:g}s after the last fault:\n"
                             + diagnose(client, sorted(open_), fleet))
    return time.time()


def diagnose(client: Client, ids: list[str], fleet: OutageFleet) -> str:
    r = fleet.history.client()
    b = fleet.broker.client()
    lines = []
    for wid in ids[:10]:
        state = client.ex.describe(wid)
        store = client.ex.store  # type: ignore[attr-defined]
        tail = [(e.id, e.type, e.attrs.get("seq"), e.attrs.get("attempt")) for e in state.history[-5:]]
        lines.append(f"{wid}: {state.status.value} last events {tail} inbox={r.llen(store.keys(wid)[2])}"
                     f" lease={r.get(store.key(wid, 'lease'))} attempts={r.hgetall(store.key(wid, 'attempts'))}")
    for shard in range(SHARDS):
        tag = f"beluga:{{s{shard}}}"
        for key in (f"{tag}:dispatched", f"{tag}:dirty"):
            lines.append(f"{key}={r.zrange(key, 0, 20, withscores=True)}")
        lines.append(f"{tag}:wake={r.smembers(f'{tag}:wake')}")
    lines.append(f"now={time.time()} broker queues="
                 f"{ {k.decode(): b.llen(k) for k in b.keys('beluga*') if b.type(k) == b'list'} }"
                 f" unacked={b.hlen('unacked')}")
    for w in fleet.workers:
        noteworthy = [ln for ln in w.log().splitlines()
                      if any(k in ln for k in ("ERROR", "WARN", "CRITICAL", "Traceback", "Error"))]
        lines.append(f"--- {w.name} alive={w.proc.poll() is None}\n" + "\n".join(noteworthy[-40:]))
    return "\n".join(lines)


@dataclass
class Report:
    runs: int = 0
    completed: int = 0
    canceled: int = 0
    duplicates: list[str] = field(default_factory=list)
    lost_signals: list[str] = field(default_factory=list)
    missing_effects: list[str] = field(default_factory=list)
    signals_accepted: int = 0
    signals_recorded: int = 0
    attempts_beyond_first: int = 0
    histories: dict[str, tuple[workflow.Event, ...]] = field(default_factory=dict)


def check_runs(client: Client, fleet: OutageFleet, steps: list[str], collectors: list[str],
               canceled: Iterable[str] = ()) -> Report:
    r = fleet.history.client()
    effects = {k.decode() for k in r.smembers("test:effects")}
    canceled = set(canceled)
    rep = Report(runs=len(steps) + len(collectors))
    for wid in [*steps, *collectors]:
        state = client.ex.describe(wid)
        history = state.history
        rep.histories[wid] = history
        rep.duplicates += duplicate_events(wid, history)
        if state.status == workflow.WorkflowStatus.COMPLETED:
            rep.completed += 1
        elif state.status == workflow.WorkflowStatus.CANCELED and wid in canceled:
            rep.canceled += 1
        else:
            raise AssertionError(f"{wid} ended {state.status.value}: {state.error}")
        rep.attempts_beyond_first += sum(1 for e in history if e.type == E.ACTIVITY_STARTED and e.attrs["attempt"] > 1)
        if wid in steps and state.status == workflow.WorkflowStatus.COMPLETED:
            assert state.result == sum(range(1, STEPS + 1)), (wid, state.result)
            keys = {f"{wid}:{state.run_id}:{e.attrs['seq']}" for e in history if e.type == E.ACTIVITY_COMPLETED}
            assert len(keys) == STEPS
            rep.missing_effects += sorted(keys - effects)
        if wid in collectors:
            recorded = [e.attrs["payload"] for e in history if e.type == E.SIGNAL_RECEIVED]
            rep.signals_recorded += len(recorded)
            rep.signals_accepted += len(client.accepted[wid])
            counts = collections.Counter(recorded)
            for payload in client.accepted[wid]:
                if counts[payload] != 1 and not payload.startswith("stop"):
                    rep.lost_signals.append(f"{wid}: accepted {payload!r} recorded {counts[payload]} times")
            strays = set(recorded) - set(client.sent[wid])
            assert not strays, (wid, strays)
            if state.status == workflow.WorkflowStatus.COMPLETED:
                data = [p for p in recorded if not p.startswith("stop")]
                stop_at = next(i for i, p in enumerate(recorded) if p.startswith("stop"))
                assert state.result == [p for p in recorded[:stop_at] if not p.startswith("stop")], (wid, data)
    return rep


def duplicate_events(wid: str, history: tuple[workflow.Event, ...]) -> list[str]:
    out = []
    if [e.id for e in history] != list(range(1, len(history) + 1)):
        out.append(f"{wid}: event ids not consecutive")
    keyed = collections.Counter()
    for e in history:
        if e.type in (E.ACTIVITY_SCHEDULED, E.ACTIVITY_COMPLETED):
            keyed[(e.type, e.attrs["seq"])] += 1
        elif e.type in (E.ACTIVITY_STARTED, E.ACTIVITY_FAILED):
            keyed[(e.type, e.attrs["seq"], e.attrs["attempt"])] += 1
        elif e.type == E.SIGNAL_RECEIVED:
            keyed[(e.type, e.attrs["payload"])] += 1
        elif e.type in CLOSING_EVENTS:
            keyed[("closed",)] += 1
    out += [f"{wid}: {key} recorded {n} times" for key, n in keyed.items() if n > 1]
    return out


def in_flight(histories: dict[str, tuple[workflow.Event, ...]], at: float) -> tuple[int, int, list[float]]:
    """At time `at`: how many runs were open, how many activity attempts were in flight (started, not
    finished: running, or waiting in the broker for a free worker), and when those of them that did not
    complete were recorded as failed, so that a new attempt went out (lost with their worker, or failed
    by the fault itself)."""
    open_runs, attempts, failed = 0, 0, []
    for history in histories.values():
        if not history or history[0].timestamp > at:
            continue
        closed = [e.timestamp for e in history if e.type in CLOSING_EVENTS]
        if closed and closed[0] <= at:
            continue
        open_runs += 1
        started: dict[tuple[int, int], float] = {}
        ended: dict[tuple[int, int], tuple[str, float]] = {}
        for e in history:
            key = (e.attrs.get("seq"), e.attrs.get("attempt"))
            if e.type == E.ACTIVITY_STARTED:
                started[key] = e.timestamp
            elif e.type in (E.ACTIVITY_COMPLETED, E.ACTIVITY_FAILED):
                ended[key] = (e.type, e.timestamp)
        for key, t in started.items():
            kind, end = ended.get(key, ("", float("inf")))
            if t <= at < end:
                attempts += 1
                if kind == E.ACTIVITY_FAILED:
                    failed.append(end)
    return open_runs, attempts, failed


def fault_figures(faults: list[Fault], histories: dict[str, tuple[workflow.Event, ...]]) -> list[dict[str, Any]]:
    out = []
    completions = sorted(e.timestamp for h in histories.values() for e in h if e.type == E.ACTIVITY_COMPLETED)
    for i, f in enumerate(faults):
        runs, attempts, failed = in_flight(histories, f.down_at)
        until = faults[i + 1].down_at if i + 1 < len(faults) else float("inf")
        failed = [t for t in failed if t < until]  # failures the next fault caused are its own
        first = next((t for t in completions if t > f.up_at), None)
        out.append({"fault": f.kind, "down_s": round(f.up_at - f.down_at, 2), "open_runs": runs,
                    "attempts_in_flight": attempts,
                    "first_completion_after_s": None if first is None else round(first - f.up_at, 2),
                    "in_flight_failed": len(failed),
                    "failed_redispatched_after_up_s": round(max(failed) - f.up_at, 2) if failed else None,
                    "failed_redispatched_after_fault_s": round(max(failed) - f.down_at, 2) if failed else None,
                    "logged_while_down": f.logged})
    return out


def report(name: str, rep: Report, faults: list[Fault], client: Client, started: float, **extra: Any) -> None:
    figures = fault_figures(faults, rep.histories)
    summary = {"scenario": name, "faults": len(faults), "runs": rep.runs, "completed": rep.completed,
               "canceled": rep.canceled, "duplicates": len(rep.duplicates), "lost_signals": len(rep.lost_signals),
               "missing_effects": len(rep.missing_effects), "signals_accepted": rep.signals_accepted,
               "signals_recorded": rep.signals_recorded, "attempts_beyond_first": rep.attempts_beyond_first,
               "client_errors": dict(client.errors), "seconds": round(time.time() - started, 1), **extra,
               "per_fault": figures}
    print(f"\nOUTAGE {json.dumps(summary)}")
    out = os.environ.get("BELUGA_OUTAGE_REPORT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
    assert not rep.duplicates, rep.duplicates[:20]
    assert not rep.lost_signals, rep.lost_signals[:20]
    assert not rep.missing_effects, rep.missing_effects[:20]
    assert all(f["open_runs"] > 0 and f["attempts_in_flight"] > 0 for f in figures), figures


# --- workloads ---------------------------------------------------------------------------------------
def start_runs(client: Client, n_steps: int, n_collectors: int, tag: str) -> tuple[list[str], list[str]]:
    suffix = uuid.uuid4().hex[:6]
    steps = [f"{tag}-steps-{i}-{suffix}" for i in range(n_steps)]
    collectors = [f"{tag}-collect-{i}-{suffix}" for i in range(n_collectors)]
    for wid in collectors:
        client.start("fleet_collect", wid)
    for wid in steps:
        client.start("fleet_steps", wid, {"steps": STEPS, "sleep": STEP_SLEEP})
    return steps, collectors


def signal_all(client: Client, collectors: list[str], data: int = 3, stop: bool = True, first: int = 0) -> None:
    for k in range(first, first + data):
        for wid in collectors:
            client.signal(wid, f"{wid}:d{k}")
    if stop:
        for wid in collectors:
            client.signal(wid, f"stop:{wid}")


def in_background(fn: Callable[[], None]) -> Callable[[], None]:
    """Run `fn` in a thread; the returned function joins it and re-raises what it raised."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the joining test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = SETTLE) -> None:
        thread.join(timeout)
        assert not thread.is_alive(), "client thread did not finish"
        if failure:
            raise failure[0]

    return join


def ready(fleet: OutageFleet, *names: str, concurrency: int = 2) -> list[Worker]:
    workers = [fleet.start_worker(n, concurrency) for n in names]
    for w in workers:
        w.wait_ready()
    return workers


# --- scenarios ---------------------------------------------------------------------------------------
def test_redis_restarted_ten_times(fleets) -> None:
    """(1) One Redis (broker and histories, append-only file on) restarted cleanly ten times while 60
    runs of 10 activity steps proceed and 20 runs parked on a signal are signalled."""
    began = time.time()
    fleet = fleets()
    ready(fleet, "a", "b")
    client = Client(fleet.executor())
    steps, collectors = start_runs(client, 60, 20, "restart")
    rng = random.Random(1)
    faults = []
    signalling = None
    for i in range(10):
        time.sleep(rng.uniform(0.4, 0.9))
        faults.append(redis_fault(fleet, fleet.history, "restart"))
        if i == 2:
            signalling = in_background(lambda: signal_all(client, collectors))
    assert signalling is not None
    signalling()
    wait_closed(client, steps + collectors, fleet)
    rep = check_runs(client, fleet, steps, collectors)
    report("redis restarted x10", rep, faults, client, began)


def test_redis_killed_with_append_only_file(fleets) -> None:
    """(2) `kill -9` of the one Redis mid-work (append-only file on), then a restart on the same data;
    three times."""
    began = time.time()
    fleet = fleets()
    ready(fleet, "a", "b")
    client = Client(fleet.executor())
    steps, collectors = start_runs(client, 40, 10, "kill9")
    signalling = in_background(lambda: signal_all(client, collectors))
    faults = []
    for _ in range(3):
        time.sleep(1.0)
        faults.append(redis_fault(fleet, fleet.history, "kill9", down_for=1.0))
    signalling()
    wait_closed(client, steps + collectors, fleet)
    rep = check_runs(client, fleet, steps, collectors)
    report("redis kill -9 x3", rep, faults, client, began)


def test_broker_outage_while_clients_call(fleets) -> None:
    """(3) The broker alone is down for 20 s (histories stay up) while clients start runs, signal and
    cancel them, retrying on errors. Workers log at most about a line a second meanwhile."""
    began = time.time()
    fleet = fleets(shared=False)
    ready(fleet, "a", "b")
    client = Client(fleet.executor())
    steps, collectors = start_runs(client, 20, 10, "broker")
    later_steps: list[str] = []
    later_collectors: list[str] = []
    canceled: list[str] = []

    def clients_during_outage() -> None:
        more_steps, more_collectors = start_runs(client, 10, 5, "broker-late")
        later_steps.extend(more_steps)
        later_collectors.extend(more_collectors)
        signal_all(client, collectors, data=2, stop=False)
        for wid in more_steps[:3]:
            client.cancel(wid)
            canceled.append(wid)
        signal_all(client, more_collectors, data=2, stop=False)

    time.sleep(0.5)
    callers: list[Callable[[], None]] = []
    fault = redis_fault(fleet, fleet.broker, "broker stop", down_for=20.0,
                        during=lambda: callers.append(in_background(clients_during_outage)))
    callers[0]()
    signal_all(client, collectors + later_collectors, data=1, first=2)
    wait_closed(client, steps + collectors + later_steps + later_collectors, fleet)
    rep = check_runs(client, fleet, steps + later_steps, collectors + later_collectors, canceled)
    per_second = {name: round(n["records"] / (fault.up_at - fault.down_at), 2) for name, n in fault.logged.items()}
    report("broker down 20 s", rep, [fault], client, began, warnings_per_second_while_down=per_second)
    assert all(rate <= 1.0 for rate in per_second.values()), per_second
    # kombu logs a traceback for each acknowledgement the lost connection cut; nothing repeats
    assert all(n["tracebacks"] <= 3 for n in fault.logged.values()), fault.logged


def test_workers_killed_during_an_outage(fleets) -> None:
    """(4) Redis goes down for 8 s (longer than redis-py's own retries, so clients see errors); while it
    is down both workers are killed with -9 and clients keep starting and signalling runs; Redis comes
    back and two new workers start."""
    began = time.time()
    fleet = fleets()
    old = ready(fleet, "a", "b")
    client = Client(fleet.executor())
    steps, collectors = start_runs(client, 30, 10, "killed")
    time.sleep(1.5)
    callers: list[Callable[[], None]] = []
    late: list[tuple[list[str], list[str]]] = []

    def during() -> None:
        callers.append(in_background(lambda: late.append(start_runs(client, 5, 5, "killed-late"))))
        callers.append(in_background(lambda: signal_all(client, collectors)))
        time.sleep(1.0)
        for w in old:
            w.kill9()

    fault = redis_fault(fleet, fleet.history, "redis stop + workers kill -9", down_for=8.0, during=during)
    ready(fleet, "c", "d")
    for join in callers:
        join()
    (late_steps, late_collectors), = late
    signal_all(client, late_collectors)
    wait_closed(client, steps + collectors + late_steps + late_collectors, fleet)
    rep = check_runs(client, fleet, steps + late_steps, collectors + late_collectors)
    report("workers killed during outage", rep, [fault], client, began)
    assert client.errors["execute"] and client.errors["signal"], client.errors  # the clients met the outage


def test_superseded_attempt_redelivered(fleets) -> None:
    """(5) A worker holding attempts is frozen (SIGSTOP) long enough for their receipts to lapse and new
    attempts to run elsewhere (lease 1 s); a 2 s broker visibility timeout then redelivers the old
    messages, which must be skipped. The frozen worker then resumes and reports its stale attempts,
    which must be ignored. Eager activities are off: an attempt the frozen worker runs eagerly has no
    message to redeliver, and with them on its attempts were sometimes all eager (nothing skipped)."""
    began = time.time()
    fleet = fleets(BELUGA_BROKER_VISIBILITY_TIMEOUT="2", BELUGA_LEASE_SECONDS="1", BELUGA_EAGER_ACTIVITIES="0")
    frozen = ready(fleet, "frozen", concurrency=4)[0]  # holds more messages than it can run at once
    ready(fleet, "b")
    client = Client(fleet.executor())
    steps, collectors = start_runs(client, 30, 5, "redeliver")
    signalling = in_background(lambda: signal_all(client, collectors))
    time.sleep(1.0)
    group = os.getpgid(frozen.proc.pid)
    fault = Fault("worker SIGSTOP", time.time())
    os.killpg(group, signals.SIGSTOP)
    time.sleep(8.0)
    os.killpg(group, signals.SIGCONT)
    fault.up_at = time.time()
    signalling()
    wait_closed(client, steps + collectors, fleet)
    rep = check_runs(client, fleet, steps, collectors)
    skipped = sum(w.log().count("skipping stale attempt") for w in fleet.workers)
    report("superseded attempts redelivered", rep, [fault], client, began, stale_deliveries_skipped=skipped)
    assert skipped > 0 and rep.attempts_beyond_first > 0
