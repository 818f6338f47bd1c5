"""`ctx.patched(change_id)`: versioning a workflow change so that runs recorded by the old code replay
the old branch and new runs take the new one. Replayed from the recorded histories of
`tests/fixtures/histories/ship_*.json` (written by the versions in `tests/core/patch_workflows.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from beluga.core import commands as cmds
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.definitions import Registry
from beluga.core.errors import NonDeterminismError
from beluga.core.records import Event, EventType, WorkflowState
from tests.core import histories
from tests.core.harness import Driver, replay
from tests.core.patch_workflows import SEEN, ship_v2, ship_v3, ship_v4

E = EventType
MARKER = {"id": "fraud-check", "deprecated": False}


@pytest.fixture(autouse=True)
def _seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


def events(name: str) -> list[Event]:
    return histories.load(name)["events"]


def run(fn: Any, history: list[Event]) -> tuple[Any, list[cmds.Command]]:
    return replay(fn, history, name="ship", workflow_id="ship-1")


def parked(fn: Any) -> Driver:
    """The v1 run that waits for its signal, loaded by the run driver with `fn` as its code."""
    data = histories.load("ship_v1_parked.json")
    return Driver(fn, name=data["workflow_type"], workflow_id=data["workflow_id"], run_id=data["run_id"],
                  history=data["events"])


def test_first_execution_records_a_patch_marker_and_takes_the_new_branch() -> None:
    d = Driver(ship_v2, "o-1", name="ship")
    assert d.commands == [cmds.RecordMarker(0, "patch", MARKER), cmds.ScheduleActivity(1, "check_fraud", "o-1")]
    assert d.history[1].type == E.MARKER_RECORDED and d.history[1].attrs == {"seq": 0, "kind": "patch",
                                                                            "value": MARKER}
    assert SEEN == ["checked"]


def test_a_history_recorded_before_the_change_replays_the_old_branch_without_error() -> None:
    inst, new = run(ship_v2, events("ship_v1.json"))
    assert new == [] and inst.finished
    assert SEEN == ["unchecked", "ship unchecked"]  # the second call is answered as the first was


def test_a_history_recorded_after_the_change_replays_the_new_branch() -> None:
    inst, new = run(ship_v2, events("ship_v2.json"))
    assert new == [] and inst.finished
    assert SEEN == ["checked", "ship checked"]


def test_an_old_run_parked_under_the_old_code_continues_on_the_old_branch() -> None:
    """Deployed while a v1 run waits for its signal: the new code rebuilds it (False, no marker), and
    when the signal arrives the later `patched` call keeps the run's first answer."""
    d = parked(ship_v2)
    assert d.step.events == [] and not d.instance.finished and SEEN == ["unchecked"]
    assert d.signal("go", "x") == [cmds.ScheduleActivity(2, "ship", ["o-1", "unchecked"])]


def test_a_change_first_reached_by_new_input_takes_the_new_branch_in_an_old_run() -> None:
    """A `patched` call the run reaches for the first time while recording (not replaying) is new code
    running: it records its marker and takes the new branch, even in a run begun by the old code."""

    def v1_plus_express(ctx: Any, order: str) -> Any:
        ctx.execute_activity("reserve", order)
        ctx.receive_signal("go").receive()
        if ctx.patched("express"):
            return ctx.execute_activity("ship_express", order)
        return ctx.execute_activity("ship", [order, "unchecked"])

    d = parked(v1_plus_express)
    assert d.step.events == []
    assert d.signal("go", "x") == [
        cmds.RecordMarker(0, "patch", {"id": "express", "deprecated": False}),
        cmds.ScheduleActivity(2, "ship_express", "o-1")]


def test_a_history_recorded_before_the_change_replays_through_the_run_driver() -> None:
    """What an executor does when it loads an open v1 run under v2 code: not stuck, nothing owed; the
    signal then records the old branch's shipment."""
    d = parked(ship_v2)
    assert d.run.stuck is None and not d.step.events
    step = d.apply(st.SignalReceived("go", "x"))
    scheduled = [ev.attrs for ev in step.events if ev.type == E.ACTIVITY_SCHEDULED]
    assert scheduled == [{"seq": 2, "name": "ship", "input": ["o-1", "unchecked"]}]


def test_one_marker_per_change_id_however_often_the_code_asks() -> None:
    def asks_twice(ctx: Any, _: Any) -> Any:
        return [ctx.patched("a"), ctx.patched("a"), ctx.patched("b")]

    d = Driver(asks_twice)
    assert d.commands == [cmds.RecordMarker(0, "patch", {"id": "a", "deprecated": False}),
                          cmds.RecordMarker(0, "patch", {"id": "b", "deprecated": False}),
                          cmds.CompleteWorkflow([True, True, True])]
    inst, new = replay(asks_twice, d.history)
    assert new == [] and inst.finished


def test_removing_a_patched_call_while_runs_hold_its_marker_is_a_divergence() -> None:
    with pytest.raises(NonDeterminismError, match="event #2 records patch marker 'fraud-check'") as err:
        run(ship_v4, events("ship_v2.json"))
    assert err.value.position == 2 and err.value.recorded == "patch marker 'fraud-check'"
    assert err.value.asked == "activity 'check_fraud' (seq 1)"


def test_another_change_id_where_the_history_holds_a_marker_is_a_divergence() -> None:
    def renamed(ctx: Any, order: str) -> Any:
        if ctx.patched("fraud-check-v2"):
            ctx.execute_activity("check_fraud", order)
        ctx.execute_activity("reserve", order)
        ctx.receive_signal("go").receive()
        return ctx.execute_activity("ship", [order, "checked"])

    with pytest.raises(NonDeterminismError, match="event #2 records patch marker 'fraud-check', but the code "
                                                  "asked for activity 'reserve'"):
        run(renamed, events("ship_v2.json"))


def test_deprecate_patch_replays_runs_that_hold_the_marker_and_records_a_deprecated_one() -> None:
    inst, new = run(ship_v3, events("ship_v2.json"))
    assert new == [] and inst.finished
    d = Driver(ship_v3, "o-1", name="ship")
    assert d.commands[0] == cmds.RecordMarker(0, "patch", {"id": "fraud-check", "deprecated": True})


def test_deprecate_patch_is_only_safe_once_no_run_from_before_the_change_is_open() -> None:
    with pytest.raises(NonDeterminismError, match="event #2 records activity 'reserve' \\(seq 1\\), but the "
                                                  "code asked for activity 'check_fraud'"):
        run(ship_v3, events("ship_v1.json"))


def test_removing_the_call_after_deprecation_skips_the_deprecated_marker() -> None:
    """Patch markers take no sequence number, so the code without the call numbers its commands as v3
    did, and replay passes over the deprecated marker that nothing asks for."""
    inst, new = run(ship_v4, events("ship_v3.json"))
    assert new == [] and inst.finished
    assert SEEN == ["checked", "ship checked"]


def test_patched_is_answered_in_read_only_replays_without_recording() -> None:
    """A query replays the run read-only; `patched` answers as the run did."""

    def queried(ctx: Any, order: str) -> Any:
        branch = "new" if ctx.patched("fraud-check") else "old"
        ctx.set_query_handler("branch", lambda: branch)
        ctx.execute_activity("reserve", order)
        ctx.receive_signal("go").receive()
        return ctx.execute_activity("ship", [order, "unchecked"])

    registry = Registry()
    registry.add_workflow(queried, "ship")
    state = WorkflowState("ship-1", "run-ship_v1", "ship", history=tuple(events("ship_v1_parked.json")))
    assert drv.read_only(state, registry.workflow, check_payload=lambda v: None).query("branch") == "old"


def test_a_run_whose_old_code_issued_nothing_yet_replays_the_old_branch() -> None:
    """v1 reacted to its start and to a first signal without a command (it waits for two): the later
    input shows the start was processed, so v2's `patched` call there answers False, with no error."""

    def v1(ctx: Any, _: Any) -> Any:
        first = ctx.receive_signal("a").receive()
        second = ctx.receive_signal("b").receive()
        return [first, second]

    def v2(ctx: Any, _: Any) -> Any:
        if ctx.patched("audit"):
            ctx.execute_activity("audit")
        first = ctx.receive_signal("a").receive()
        second = ctx.receive_signal("b").receive()
        return [first, second]

    d = Driver(v1)
    d.signal("a", 1)
    assert [ev.type for ev in d.history] == [E.WORKFLOW_STARTED, E.SIGNAL_RECEIVED]
    assert d.deploy(v2).events == [] and d.run.stuck is None and not d.instance.finished
    assert d.signal("b", 2) == [cmds.CompleteWorkflow([1, 2])]
    # A history holding only its start may not have been processed yet: the new code takes it over.
    _, new = replay(v2, d.history[:1])
    assert new == [cmds.RecordMarker(0, "patch", {"id": "audit", "deprecated": False}),
                   cmds.ScheduleActivity(1, "audit")]


def test_inputs_kept_while_a_run_was_stuck_are_new_to_the_code() -> None:
    """Inputs recorded `deferred` (no code ran for them) are processed for the first time when matching
    code loads the run: a `patched` call they reach records its marker."""

    def v2(ctx: Any, _: Any) -> Any:
        ctx.receive_signal("a").receive()
        if ctx.patched("audit"):
            ctx.execute_activity("audit")
        return "done"

    history = [Event(1, E.WORKFLOW_STARTED, 1.0, {"input": None, "seed": 1}),
               Event(2, E.SIGNAL_RECEIVED, 2.0, {"name": "a", "payload": 1, "deferred": True})]
    _, new = replay(v2, history)
    assert new == [cmds.RecordMarker(0, "patch", {"id": "audit", "deprecated": False}),
                   cmds.ScheduleActivity(1, "audit")]
