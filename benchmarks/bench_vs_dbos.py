"""Throughput: Beluga (in-process executor + SQLiteStore) versus DBOS (SQLite system database).

    .venv/bin/pip install -e ".[bench]"   # once, in a checkout
    PYTHONPATH=. .venv/bin/python benchmarks/bench_vs_dbos.py [--reps 5]

Workload, identical for both: W workflows (default 200), each running S trivial steps in sequence
(default 10; a step returns x + 1), all W started back to back, then every result awaited.
Measured: wall time from just before the first start to the moment the last result is in hand, and
steps/s = W*S / that time. Imports, database creation/migration, `DBOS.launch()` and executor
start-up are outside the timed window. Each repetition runs in a fresh subprocess on a fresh temp
database file; the systems are interleaved (beluga, dbos, dbos-default, beluga, ...) so drift in the
machine hits all of them alike. Each child first runs 2 untimed warm-up workflows on its own database.

Durability modes (printed, with the PRAGMA values read back from live connections):
  beluga        SQLiteStore as shipped: journal_mode=WAL, synchronous=NORMAL, one BEGIN IMMEDIATE
                transaction per coordinator batch (group commit across runs).
  dbos          DBOS tuned to the same mode: a SQLAlchemy `connect` listener puts every system-database
                connection in journal_mode=WAL, synchronous=NORMAL. This is the fair comparison and the
                one the goal ratio (>= 2.0) refers to.
  dbos-default  DBOS as shipped: SQLite's defaults, journal_mode=DELETE, synchronous=FULL (an fsync per
                commit); stronger against power loss, so it is reported for information only.
Both systems make each step's result durable before the workflow moves past it (Beluga: the
activity_completed event is committed before the workflow code is resumed; DBOS: the step output is
written to operation_outputs before the step call returns); neither survives power loss of the last
commits under WAL + synchronous=NORMAL, both survive a process crash.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._machine import describe, versions  # noqa: E402
from benchmarks.floors import sqlite_floor  # noqa: E402

SYSTEMS = ("beluga", "dbos", "dbos-default")
WARMUP_WORKFLOWS = 2


# --- children: one timed repetition each ----------------------------------------------------------
def run_beluga(db: str, workflows: int, steps: int) -> dict:
    from beluga import workflow
    from beluga.stores import SQLiteStore

    @workflow.activity(name="bench_inc")
    def inc(x: int) -> int:
        return x + 1

    @workflow.defn(name="bench_loop")
    def loop(ctx: workflow.WorkflowContext, n: int) -> int:
        x = 0
        for _ in range(n):
            x = ctx.execute_activity(inc, x)
        return x

    store = SQLiteStore(db)
    ex = workflow.new("default", workflow.Config(store=store))
    try:
        warm = [ex.execute(loop, workflow.WorkflowOptions(input=steps)) for _ in range(WARMUP_WORKFLOWS)]
        for h in warm:
            h.result(timeout=60)

        t0 = time.perf_counter()
        handles = [ex.execute(loop, workflow.WorkflowOptions(input=steps)) for _ in range(workflows)]
        t_started = time.perf_counter()
        results = [h.result(timeout=600) for h in handles]
        t1 = time.perf_counter()

        # Untimed checks: every result right, every step recorded in the durable history.
        completed = sum(1 for h in handles for e in ex.describe(h.id).history if e.type == "activity_completed")
        conn = store._conn()  # read back the PRAGMAs of the connection the store really uses
        pragmas = {"journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                   "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0]}
    finally:
        ex.close()
        store.close()
    return {"wall": t1 - t0, "start_phase": t_started - t0, "ok": all(r == steps for r in results),
            "steps_recorded": completed, "pragmas": [pragmas]}


def run_dbos(db: str, workflows: int, steps: int, tuned: bool) -> dict:
    import sqlalchemy as sa
    from sqlalchemy import event

    seen: list[dict] = []

    # Class-level listener: fires for every connection of every engine DBOS creates in this process.
    @event.listens_for(sa.engine.Engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
        if tuned:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        seen.append({"journal_mode": dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0],
                     "synchronous": dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]})

    import dbos
    from dbos import DBOS

    DBOS(config={"name": "beluga-bench", "system_database_url": f"sqlite:///{db}", "log_level": "WARNING"})

    @DBOS.step()
    def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def loop(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    DBOS.launch()
    try:
        warm = [DBOS.start_workflow(loop, steps) for _ in range(WARMUP_WORKFLOWS)]
        for h in warm:
            h.get_result()

        t0 = time.perf_counter()
        handles = [DBOS.start_workflow(loop, steps) for _ in range(workflows)]
        t_started = time.perf_counter()
        results = [h.get_result() for h in handles]
        t1 = time.perf_counter()
    finally:
        DBOS.destroy(destroy_registry=True)

    with sqlite3.connect(db) as c:  # untimed check: the step outputs really are in the database
        recorded = c.execute("SELECT count(*) FROM operation_outputs").fetchone()[0]
    recorded -= WARMUP_WORKFLOWS * steps
    distinct = [dict(t) for t in {tuple(sorted(p.items())) for p in seen}]
    return {"wall": t1 - t0, "start_phase": t_started - t0, "ok": all(r == steps for r in results),
            "steps_recorded": recorded, "pragmas": distinct, "dbos_version": dbos_version(dbos)}


def dbos_version(module: object) -> str:
    try:
        from importlib.metadata import version

        return version("dbos")
    except Exception:
        return getattr(module, "__version__", "?")


def child(args: argparse.Namespace) -> None:
    if args.child == "beluga":
        out = run_beluga(args.db, args.workflows, args.steps)
    else:
        out = run_dbos(args.db, args.workflows, args.steps, tuned=(args.child == "dbos"))
    print("RESULT " + json.dumps(out), flush=True)


# --- parent: interleave repetitions, report medians ----------------------------------------------
def one_rep(system: str, workflows: int, steps: int) -> dict:
    tmp = tempfile.mkdtemp(prefix=f"bench-{system}-")
    db = os.path.join(tmp, "bench.sqlite")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", system, "--db", db,
                               "--workflows", str(workflows), "--steps", str(steps)],
                              capture_output=True, text=True, env=env, timeout=1800)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{system} repetition failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(line[len("RESULT "):])
    expected = workflows * steps
    if not out["ok"] or out["steps_recorded"] != expected:
        raise SystemExit(f"{system}: wrong results or {out['steps_recorded']} of {expected} steps recorded")
    out["steps_per_s"] = expected / out["wall"]
    return out


def machine() -> str:
    return describe(f"sqlite {sqlite3.sqlite_version}", versions("dbos", "sqlalchemy"),
                    f"temp dir {tempfile.gettempdir()}")

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workflows", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    ap.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    systems = [s for s in args.systems.split(",") if s]
    total = args.workflows * args.steps
    print(f"bench_vs_dbos: {args.workflows} workflows x {args.steps} steps = {total} steps per repetition, "
          f"{args.reps} repetitions per system, interleaved, one subprocess + fresh SQLite file each")
    print("machine:", machine())
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    floors: list[float] = []
    for rep in range(args.reps):
        for s in systems:
            out = one_rep(s, args.workflows, args.steps)
            runs[s].append(out)
            print(f"  rep {rep + 1}/{args.reps} {s:<13} {out['steps_per_s']:>10.0f} steps/s  "
                  f"wall {out['wall']:.3f}s (start phase {out['start_phase']:.3f}s)", flush=True)
        floors.append(sqlite_floor()["steps_per_s"])
        print(f"  rep {rep + 1}/{args.reps} {'floor':<13} {floors[-1]:>10.0f} steps/s  (benchmarks/floors.py: "
              "bare SQLite writes, WAL + NORMAL, 50 steps per commit)", flush=True)

    print()
    print("durability mode (PRAGMAs read back from the connections each system used):")
    for s in systems:
        modes = {json.dumps(p, sort_keys=True) for r in runs[s] for p in r["pragmas"]}
        print(f"  {s:<13} " + "; ".join(sorted(modes)) + "   (synchronous: 0=OFF 1=NORMAL 2=FULL)")

    med = {s: statistics.median(r["steps_per_s"] for r in runs[s]) for s in systems}
    print()
    print(f"{'system':<14}{'median steps/s':>16}{'min':>10}{'max':>10}{'median wall s':>15}")
    for s in systems:
        rates = [r["steps_per_s"] for r in runs[s]]
        print(f"{s:<14}{med[s]:>16.0f}{min(rates):>10.0f}{max(rates):>10.0f}"
              f"{statistics.median(r['wall'] for r in runs[s]):>15.3f}")
    print()
    if "beluga" in med:
        for other in ("dbos", "dbos-default"):
            if other in med:
                ratio = med["beluga"] / med[other]
                note = "  goal >= 2.0: " + ("MET" if ratio >= 2.0 else "MISSED") if other == "dbos" else \
                    "  (information: DBOS with its default, fsync-per-commit settings)"
                print(f"ratio beluga/{other:<13} = {ratio:.2f}{note}")
    if "beluga" in med:
        floor = statistics.median(floors)
        ratio = med["beluga"] / floor
        print(f"ratio beluga/sqlite floor  = {ratio:.3f}  (floor {floor:.0f} steps/s)  goal >= 0.15: "
              + ("MET" if ratio >= 0.15 else "MISSED"))
    print("machine after:", f"load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
