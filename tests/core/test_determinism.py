"""Replay: the same code over its own history asks for nothing new; changed code raises
`NonDeterminismError` naming the event position, what the history holds and what the code asked for.
Recorded histories in `tests/fixtures/histories/` are replayed like Temporal's `test_replayer.py`."""

from __future__ import annotations

from typing import Any

import pytest

from beluga.core import commands as cmds
from beluga.core.errors import NonDeterminismError
from tests.core import histories
from tests.core.harness import Driver, replay


def original(ctx: Any, order: str) -> Any:
    charged = ctx.execute_activity("charge", order)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def recorded() -> Driver:
    """#1 started, #2 charge scheduled, #3 its attempt began, #4 charge completed, #5 signal, #6 ship
    scheduled, #7 its attempt began, #8 ship completed, #9 completed: steps end at #1, #3, #4, #7, #9."""
    d = Driver(original, "o-1")
    d.complete(1, "charged")
    d.signal("go", "yes")
    d.complete(2, "shipped")
    assert d.commands == [cmds.CompleteWorkflow("shipped")]
    return d


def test_same_code_replays_with_no_new_commands() -> None:
    d = recorded()
    inst, new = replay(original, d.history)
    assert new == [] and inst.finished and inst.version == 9


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 6, 7, 9])
def test_replaying_any_stored_prefix_then_the_rest_reaches_the_same_end(cut: int) -> None:
    """A run rebuilt from any history a store can hold (every input recorded with its commands; the
    start alone, before the first activation), or one cut between a command and its attempt's start,
    owes only the start's commands, then follows the rest."""
    history = recorded().history
    inst, new = replay(original, history[:cut])
    following = history[cut:cut + len(new)]
    assert [cmds.to_event(c, ev.id, ev.timestamp) for c, ev in zip(new, following, strict=True)] == following
    assert len(new) == (1 if cut == 1 else 0)
    assert inst.activate(history[cut + len(new):]) == []
    assert inst.finished


@pytest.mark.parametrize("cut", [5, 8])
def test_an_input_whose_recorded_commands_are_missing_is_a_divergence(cut: int) -> None:
    """An input is recorded with its commands in one write: a history that ends right after an input
    that asks for commands was written by other code, so replay refuses to invent them."""
    history = recorded().history
    with pytest.raises(NonDeterminismError, match=f"after event #{cut}.*the last input of the history"):
        replay(original, history[:cut])


def changed_activity_name(ctx: Any, order: str) -> Any:
    charged = ctx.execute_activity("bill", order)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def timer_instead_of_activity(ctx: Any, order: str) -> Any:
    ctx.sleep(5)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [order, go])


def extra_command(ctx: Any, order: str) -> Any:
    charged = ctx.execute_activity("charge", order)
    ctx.start_activity("audit", order)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def missing_command(ctx: Any, order: str) -> Any:
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [order, go])


def missing_last_activity(ctx: Any, order: str) -> Any:
    ctx.execute_activity("charge", order)
    return ctx.receive_signal("go").receive()


def side_effect_inserted(ctx: Any, order: str) -> Any:
    charged = ctx.execute_activity("charge", order)
    ctx.side_effect(lambda: "new")
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def child_instead_of_activity(ctx: Any, order: str) -> Any:
    charged = ctx.execute_child_workflow("charge", order)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def swapped_fan_out(ctx: Any, order: str) -> Any:
    ctx.wait_all([ctx.start_activity("ship", order), ctx.start_activity("charge", order)])


def fails_instead(ctx: Any, order: str) -> Any:
    ctx.execute_activity("charge", order)
    raise RuntimeError("new validation")


@pytest.mark.parametrize(("code", "position", "history_holds", "code_asked"), [
    (changed_activity_name, 2, "activity 'charge' (seq 1)", "activity 'bill' (seq 1)"),
    (timer_instead_of_activity, 2, "activity 'charge' (seq 1)", "timer of 5s (seq 1)"),
    (extra_command, 5, "signal_received", "activity 'audit' (seq 2)"),
    (missing_command, 2, "activity 'charge' (seq 1)", "nothing more at this point"),
    (missing_last_activity, 6, "activity 'ship' (seq 2)", "CompleteWorkflow"),
    (side_effect_inserted, 5, "signal_received", "side_effect marker (seq 2)"),
    (child_instead_of_activity, 2, "activity 'charge' (seq 1)", "child workflow 'charge' (seq 1)"),
    (swapped_fan_out, 2, "activity 'charge' (seq 1)", "activity 'ship' (seq 1)"),
    (fails_instead, 5, "signal_received", "FailWorkflow"),
], ids=lambda v: getattr(v, "__name__", None))
def test_changed_code_raises_non_determinism_error(code: Any, position: int, history_holds: str,
                                                   code_asked: str) -> None:
    d = recorded()
    with pytest.raises(NonDeterminismError) as info:
        replay(code, d.history, name="original")
    message = str(info.value)
    assert f"event #{position} records {history_holds}" in message
    assert code_asked in message
    assert "'original'" in message and "wf-1" in message
    assert "deploy code that matches its history" in message


def test_changed_input_is_not_a_divergence() -> None:
    """As in Temporal, only control flow is compared: the same call with other data replays."""

    def other_input(ctx: Any, order: str) -> Any:
        charged = ctx.execute_activity("charge", order.upper())
        go = ctx.receive_signal("go").receive()
        return ctx.execute_activity("ship", [charged, go, "extra"])

    _, new = replay(other_input, recorded().history)
    assert new == []


def test_a_command_added_after_the_last_input_is_a_divergence() -> None:
    """A run parked after its first activity, replayed by code that calls one more activity before it
    parks: the history records that the first result caused nothing, so the new command is caught at
    once instead of being appended after the old history (issue 6)."""
    d = Driver(original, "o-1")
    d.complete(1, "charged")
    with pytest.raises(NonDeterminismError, match=r"after event #4 \(activity_completed\).*'audit' \(seq 2\)"):
        replay(extra_command, d.history)


# --- recorded histories ------------------------------------------------------------------------------
@pytest.mark.parametrize(("fixture", "expected"), [
    ("order_approved.json", "processed ORD-456"),
    ("reminders_snoozed.json", {"token": "token-from-the-outside-world", "started": 1000000.0,
                                "roll": 0.40397807494366633, "id": "3af27f80-2dc5-4d3d-9974-d75b333824fe",
                                "outcome": "snoozed", "child": "sent"}),
])
def test_recorded_history_replays(fixture: str, expected: Any) -> None:
    data = histories.load(fixture)
    fn = histories.WORKFLOWS[data["workflow_type"]]
    results: list[Any] = []

    def capture(ctx: Any, input: Any) -> Any:
        results.append(fn(ctx, input))
        return results[-1]

    inst, new = replay(capture, data["events"], name=data["workflow_type"], workflow_id=data["workflow_id"],
                       run_id=data["run_id"])
    assert new == [] and inst.finished
    assert results == [expected] == [data["events"][-1].attrs["result"]]


def test_recorded_history_of_older_code_raises_non_determinism_error() -> None:
    data = histories.load("order_v0_charge_card.json")
    with pytest.raises(NonDeterminismError, match=r"event #5 records activity 'charge_card' \(seq 2\), but "
                                                  r"the code asked for timer of 3600s \(seq 2\)"):
        replay(histories.order, data["events"], name="order", workflow_id=data["workflow_id"],
               run_id=data["run_id"])
