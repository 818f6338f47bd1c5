"""Priorities on a real fleet (beluga/core/priority.py): the attempts' broker messages go to kombu's
priority lists on a Redis broker, and on two real workers the attempts waiting for a concurrency permit
take it by priority while a low-priority one still gets it within the aging bound
(`BELUGA_PRIORITY_AGING`), read from the recorded events."""

from __future__ import annotations

import uuid
from typing import Any

from beluga import workflow
from beluga.celery.client import CeleryExecutor
from beluga.workflow import WorkflowOptions
from tests.executors import workflows as W
from tests.executors.helpers import eventually

AGING = 1.0


def test_attempts_go_to_the_brokers_priority_lists(fleet: Any) -> None:
    """A Redis broker (kombu's steps 0, 3, 6, 9: a consumer empties the first list first): priority 4 and
    5 attempts are sent to later lists than the default's, 1 and 2 to the default's; a queue's length
    counts them all. A kombu consumer takes them back in that order."""
    ex = fleet.executor()
    assert isinstance(ex, CeleryExecutor)
    sender = ex._rt.sender  # noqa: SLF001 - the client's own sender, as a coordinator sends attempts
    queue = f"prio-{uuid.uuid4().hex[:8]}"
    for seq, priority in enumerate([5, 4, None, 1], start=1):
        options = {} if priority is None else {"priority": priority}
        sender.publish(("wf", "run", seq, 1, "noop", None, options), queue)
    assert sender.queue_length(queue) == 4
    r = ex._rt.fleet.redis  # noqa: SLF001 - the broker is the same server here
    assert {k: r.llen(k) for k in (queue, f"{queue}\x06\x163", f"{queue}\x06\x166")} == {
        queue: 2, f"{queue}\x06\x163": 1, f"{queue}\x06\x166": 1}
    taken = []
    with ex.app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        for _ in range(4):
            taken.append(simple.get(timeout=5).headers["argsrepr"])
        simple.close()
    assert [t.split("seq=")[1].split(",")[0] for t in taken] == ["3", "4", "2", "1"]  # default, 1, 4, 5


def test_freed_permits_go_by_priority_and_low_priority_still_runs_within_the_bound(private_fleet: Any) -> None:
    """One permit; two priority-1 runs call the activity one call after another (each of their calls
    begins to wait while the other's runs), and a priority-5 run's call begins to wait among them. While
    it is younger than 4 x AGING, the priority-1 calls that began to wait after it pass it; none that
    began to wait later than that does (it is then first in order), and it completes."""
    for name in ("p1", "p2"):
        private_fleet.start_worker(name, BELUGA_PRIORITY_AGING=str(AGING)).wait_ready()
    # the client has the workflows' code, so it may take a run's first step (and its first ask) itself when
    # this process serves metrics (an earlier test may have): it must age waiters as the workers do
    ex = private_fleet.executor(priority_aging=AGING)
    key = uuid.uuid4().hex[:8]
    chain = {"key": key, "n": 40, "seconds": 0.15}
    highs = [ex.execute(W.wf_prioritized_chain, WorkflowOptions(id=f"{key}-h{i}", input={**chain, "tag": f"h{i}-"},
                                                                priority=1)) for i in range(2)]
    # the priority-5 call must begin to wait: it joins once the two chains contend for the one permit
    eventually(lambda: any(ev.type == "activity_waiting" for h in highs for ev in ex.describe(h.id).history),
               timeout=60, what="a priority-1 call waiting for the permit")
    low = ex.execute(W.wf_prioritized_chain, WorkflowOptions(id=f"{key}-low", input={**chain, "n": 1, "tag": "low"},
                                                             priority=5))
    assert low.result(timeout=120) == ["low0"]
    for h in highs:
        h.result(timeout=120)
    began, started = waits_and_starts(ex, [f"{key}-h0", f"{key}-h1", f"{key}-low"])
    low_began, low_started = began[(f"{key}-low", 1)], started[(f"{key}-low", 1)]
    later = {call: t for call, t in began.items() if t > low_began and call[0] != f"{key}-low"}
    passed = [call for call in later if started[call] < low_started]
    assert passed, "no priority-1 call that began to wait after the priority-5 one started before it"
    low_events = [(ev.type, round(ev.timestamp - low_began, 3)) for ev in ex.describe(f"{key}-low").history]
    assert all(later[call] <= low_began + 4 * AGING for call in passed), \
        (sorted((later[c] - low_began, started[c] - low_started) for c in passed), low_events)
    assert any(t > low_began + 4 * AGING for t in later.values()), "the priority-1 calls kept coming past the bound"
    for wid in (f"{key}-h0", f"{key}-h1", f"{key}-low"):
        assert not [ev for ev in ex.describe(wid).history if ev.type == "activity_failed"]


def waits_and_starts(ex: workflow.DurableExecutor, wids: list[str]
                     ) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """When each call (workflow id, seq) first began to wait for its permit and when it started, from the
    recorded events (`activity_waiting`, `activity_started`; the fleet's clock)."""
    began: dict[tuple[str, int], float] = {}
    started: dict[tuple[str, int], float] = {}
    for wid in wids:
        for ev in ex.describe(wid).history:
            call = (wid, ev.attrs.get("seq"))
            if ev.type == "activity_waiting":
                began.setdefault(call, ev.timestamp)
            elif ev.type == "activity_started":
                started[call] = ev.timestamp
    return began, started
