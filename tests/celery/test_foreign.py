"""Two deployments on one broker: fleets with their own key prefixes consume the same queue. A worker
that takes a message of the other fleet says so and hands it back to its queue (beluga/celery/foreign.py)
instead of skipping it as stale, which left the other fleet's run waiting for its lease, or for ever
while such a worker kept winning its messages."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Ignore

from beluga import workflow
from beluga.celery import foreign
from tests.conftest import Fleet


def test_a_worker_of_another_fleet_hands_the_messages_it_takes_back(private_fleet: Fleet) -> None:
    """Fleet B's worker alone consumes the queue while fleet A starts its runs: B takes every one of A's
    messages first (the fault hits work in flight), says so, and hands them back; once A's own worker
    joins, every run of A completes, each activity once, and B skipped none of them as stale."""
    fleet = private_fleet  # one broker, two fleets on it (key prefixes of their own)
    ours, theirs = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    stranger = fleet.start_worker("stranger", BELUGA_KEY_PREFIX=theirs).wait_ready()
    ex = fleet.executor(key_prefix=ours)
    run = uuid.uuid4().hex[:6]
    handles = [ex.execute("fleet_steps", workflow.WorkflowOptions(id=f"mine-{run}-{i}", input={"steps": 3}))
               for i in range(6)]
    deadline = time.monotonic() + 60  # a failure's bound, not a timing assertion
    while "message of another fleet" not in stranger.log():  # the stranger took one of ours
        assert time.monotonic() < deadline, f"the stranger took none of our messages: {stranger.log()[-2000:]}"
        assert all(h.describe().status.is_open for h in handles)
        time.sleep(0.1)
    fleet.start_worker("own", BELUGA_KEY_PREFIX=ours).wait_ready()
    assert [h.result(timeout=120) for h in handles] == [sum(range(1, 4))] * 6
    log = stranger.log()
    assert "Handed it back to its queue" in log and "BELUGA_KEY_PREFIX" in log
    assert "skipping stale attempt" not in log
    for h in handles:
        done = [e for e in h.describe().history if e.type == workflow.EventType.ACTIVITY_COMPLETED]
        assert sorted(e.attrs["seq"] for e in done) == [1, 2, 3]


class _Task:
    """What `refuse_foreign` uses of a Celery task: its request and a way to send its message again."""

    name = "beluga.activity"

    def __init__(self, headers: dict[str, Any]) -> None:
        self.request = SimpleNamespace(headers=headers, delivery_info={"routing_key": "beluga"},
                                       args=("wf", "run", 1, 1), **headers)
        self.sent: list[dict[str, Any]] = []

    def signature_from_request(self, queue: str, headers: dict[str, Any]) -> Any:
        task = self

        class _Signature:
            def apply_async(self, countdown: float) -> None:
                task.sent.append({"queue": queue, "headers": headers, "countdown": countdown})

        return _Signature()


class _Fleet:
    """What `refuse_foreign` uses of a Fleet: its id (read again on `refresh`) and what its store holds."""

    def __init__(self, ids: list[str], known: bool = False) -> None:
        self.ids, self.known, self.reads = ids, known, 0

    def identity(self, refresh: bool = False) -> str:
        if refresh:
            self.reads += 1
            self.ids = self.ids[1:] or self.ids
        return self.ids[0]

    def knows(self, task: str, args: tuple[Any, ...]) -> bool:
        return self.known


def test_a_message_of_this_fleet_or_without_a_fleet_is_taken() -> None:
    foreign.refuse_foreign(_Task({foreign.FLEET_HEADER: "mine"}), _Fleet(["mine"]))
    foreign.refuse_foreign(_Task({}), _Fleet(["mine"]))  # an older client's message: no header


def test_a_stale_id_on_either_side_is_not_taken_for_another_fleet() -> None:
    """This process's id is stale (its store was wiped and given a new one): read again, it matches. The
    sender's is stale: the message's attempt is in this fleet's store, so it is taken."""
    mine_was_stale = _Fleet(["old", "new"])
    foreign.refuse_foreign(_Task({foreign.FLEET_HEADER: "new"}), mine_was_stale)
    assert mine_was_stale.reads == 1
    theirs_is_stale = _Task({foreign.FLEET_HEADER: "stale"})
    foreign.refuse_foreign(theirs_is_stale, _Fleet(["mine"], known=True))
    assert theirs_is_stale.sent == []


def test_a_foreign_message_is_handed_back_with_one_more_hop_then_dropped_past_the_limit() -> None:
    task = _Task({foreign.FLEET_HEADER: "theirs", foreign.HOPS_HEADER: 2})
    with pytest.raises(Ignore):
        foreign.refuse_foreign(task, _Fleet(["mine"]))
    assert task.sent == [{"queue": "beluga", "countdown": foreign.HAND_BACK_DELAY,
                          "headers": {foreign.FLEET_HEADER: "theirs", foreign.HOPS_HEADER: 3}}]
    worn = _Task({foreign.FLEET_HEADER: "theirs", foreign.HOPS_HEADER: foreign.MAX_HOPS})
    with pytest.raises(Ignore):
        foreign.refuse_foreign(worn, _Fleet(["mine"]))
    assert worn.sent == []  # dropped: its own fleet sends it again
