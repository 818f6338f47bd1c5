"""What this machine allows at all: the floors a durable step is measured against (issue 19).

- `append_floor`: a raw redis-py loop that, per step, runs one EVALSHA checking a run's version and
  appending 200 bytes (XADD to the run's stream + HSET of its version), from 2 processes at once (as a
  2-process pool does). No replay, no Celery, no dispatch: the least one durable fleet step costs.
- `sqlite_floor`: the in-process executor's durability without the executor: per step one 200-byte event
  INSERT and one version UPDATE, in WAL mode with `synchronous=NORMAL`, 50 steps per transaction (the
  group commit `SQLiteStore` does per coordinator batch).

    PYTHONPATH=. .venv/bin/python benchmarks/floors.py          # both, against a private Redis
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
PAYLOAD = b"x" * 200
APPEND = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
redis.call('HSET', KEYS[1], 'v', ARGV[2])
return 1
"""


def _append_child(url: str, steps: int, prefix: str, runs: int = 100) -> None:
    """One process of the floor: `steps` appends spread over `runs` runs of its own, each checked
    against the version it holds; starts when the parent says go, prints its end time and CPU."""
    r = redis.Redis.from_url(url)
    sha = r.script_load(APPEND)
    versions = [0] * runs
    for i in range(runs):
        r.hset(f"{prefix}:{i}", "v", "0")
    r.rpush(f"{prefix}:ready", 1)
    r.blpop([f"{prefix}:go"], timeout=60)
    cpu0 = time.process_time()
    for step in range(steps):
        i = step % runs
        v = versions[i]
        if r.evalsha(sha, 2, f"{prefix}:{i}", f"{prefix}:{i}:s", str(v), str(v + 1), PAYLOAD) != 1:
            raise SystemExit("the floor's own version check failed")
        versions[i] = v + 1
    print(json.dumps({"end": time.time(), "cpu": time.process_time() - cpu0}), flush=True)


def append_floor(url: str, steps: int = 20_000, procs: int = 2) -> dict[str, float]:
    """Steps/s of the raw append loop from `procs` processes (wall from the go signal to the last end),
    and its CPU ms per step (client processes; the server's is not counted, as for no system here)."""
    r = redis.Redis.from_url(url)
    tag = f"floor:{os.getpid()}:{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    children = [subprocess.Popen([sys.executable, str(Path(__file__)), "--child", url, str(steps // procs),
                                  f"{tag}:{n}"], stdout=subprocess.PIPE, text=True, env=env) for n in range(procs)]
    try:
        for n in range(procs):
            if r.blpop([f"{tag}:{n}:ready"], timeout=60) is None:
                raise SystemExit("a floor process did not start")
        t0 = time.time()
        for n in range(procs):
            r.rpush(f"{tag}:{n}:go", 1)
        outs = [json.loads(c.communicate(timeout=600)[0]) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
        for key in r.scan_iter(f"{tag}:*", count=1000):
            r.delete(key)
    wall = max(o["end"] for o in outs) - t0
    done = (steps // procs) * procs
    return {"steps_per_s": done / wall, "cpu_ms": sum(o["cpu"] for o in outs) * 1e3 / done}


def sqlite_floor(steps: int = 50_000, per_commit: int = 50, runs: int = 200) -> dict[str, float]:
    """Steps/s of the bare SQLite writes at the in-process executor's durability (a fresh file)."""
    with tempfile.TemporaryDirectory(prefix="beluga-floor-") as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, version INTEGER)")
        db.execute("CREATE TABLE events (id TEXT, seq INTEGER, data BLOB, PRIMARY KEY (id, seq))")
        db.executemany("INSERT INTO runs VALUES (?, 0)", [(f"w{i}",) for i in range(runs)])
        versions = [0] * runs
        t0, cpu0 = time.perf_counter(), time.process_time()
        for start in range(0, steps, per_commit):
            db.execute("BEGIN")
            for step in range(start, min(steps, start + per_commit)):
                i = step % runs
                v = versions[i] = versions[i] + 1
                db.execute("INSERT INTO events VALUES (?, ?, ?)", (f"w{i}", v, PAYLOAD))
                if db.execute("UPDATE runs SET version = ? WHERE id = ? AND version = ?",
                              (v, f"w{i}", v - 1)).rowcount != 1:
                    raise SystemExit("the floor's own version check failed")
            db.execute("COMMIT")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        db.close()
    return {"steps_per_s": steps / wall, "cpu_ms": cpu * 1e3 / steps}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _append_child(argv[1], int(argv[2]), argv[3])
        return
    sys.path.insert(0, str(HERE.parent))
    from benchmarks import fleet_setup as fs

    with fs.redis_server("redis-server") as (url, desc):
        results: dict[str, Any] = {"append (2 processes)": append_floor(url)}
    results["sqlite group commit"] = sqlite_floor()
    print(f"server: {desc}")
    for name, r in results.items():
        print(f"{name:<22} {r['steps_per_s']:>9.0f} steps/s   {r['cpu_ms']:.3f} ms CPU/step")


if __name__ == "__main__":
    main(sys.argv[1:])
