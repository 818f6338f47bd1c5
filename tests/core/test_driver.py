"""The run driver, stepped by hand (`tests.core.harness`) with its clock and randomness as arguments:
what each input records, which effects follow, how a stuck run keeps its inputs, how a signal that
arrives as the run closes is kept before the close, and how replay holds every recorded step to exactly
its recorded commands."""

from __future__ import annotations

from typing import Any

import pytest

from beluga.core import commands as cmds
from beluga.core import steps as st
from beluga.core.errors import NonDeterminismError
from beluga.core.limits import Granted, Holder, Refused
from beluga.core.records import Event, WorkflowStatus
from tests.core.harness import RAND, T0, Driver, E, replay


def order(ctx: Any, order_id: str) -> Any:
    charged = ctx.execute_activity("charge", order_id)
    go = ctx.receive_signal("go").receive()
    return ctx.execute_activity("ship", [charged, go])


def one_signal(ctx: Any) -> Any:
    return ctx.receive_signal("go").receive()


def test_inputs_record_events_and_effects() -> None:
    d = Driver(order, "o-1")
    assert d.types() == [E.WORKFLOW_STARTED, E.ACTIVITY_SCHEDULED, E.ACTIVITY_STARTED]
    step = d.apply(st.ActivityOutcome(1, 1, True, "charged"), dt=7)
    assert [type(e) for e in step.effects] == [st.Observed, st.ActivityClosed]
    assert step.effects[1] == st.ActivityClosed("charge", {}, pytest.approx(7))  # its schedule-to-close
    step = d.apply(st.SignalReceived("go", "yes"))
    assert [e.type for e in step.events] == [E.SIGNAL_RECEIVED, E.ACTIVITY_SCHEDULED, E.ACTIVITY_STARTED]
    assert step.effects[-1] == st.DispatchAttempt(2, 1, "ship", ["charged", "yes"], {})
    step = d.apply(st.ActivityOutcome(2, 1, True, "shipped"))
    assert step.status is WorkflowStatus.COMPLETED and step.result == "shipped"
    assert st.RunClosed(WorkflowStatus.COMPLETED, "shipped") in step.effects


def test_a_failed_attempt_is_retried_under_the_policy_and_a_stale_outcome_is_ignored() -> None:
    d = Driver(order, "o-1")
    boom = {"type": "ValueError", "message": "boom", "traceback": "", "non_retryable": False}
    step = d.apply(st.ActivityOutcome(1, 1, False, boom), dt=10)
    (retry,) = [e for e in step.effects if isinstance(e, st.ArmRetry)]
    assert retry.seq == 1 and retry.attempt == 2 and retry.due == pytest.approx(T0 + 10 + 0.1)
    assert d.run.apply(d.run.begin(), st.ActivityOutcome(1, 1, True, "late"), d.clock, RAND) is False
    step = d.apply(st.AttemptDue(1, 2))
    assert step.effects == [st.DispatchAttempt(1, 2, "charge", "o-1", {})]
    assert not [e for e in step.effects if isinstance(e, st.ActivityClosed)]  # not while it is retried
    step = d.apply(st.ActivityOutcome(1, 2, False, {**boom, "non_retryable": True}))
    assert d.state.status is WorkflowStatus.FAILED
    assert [(e.name, e.seconds) for e in step.effects if isinstance(e, st.ActivityClosed)] == [
        ("charge", pytest.approx(d.clock - T0))]  # closed for good, across both attempts



def test_a_final_outcome_from_a_sender_that_retried_is_recorded_at_its_attempt_and_never_retried() -> None:
    """Temporal retries on its server and reports only an activity's last outcome: the run saw attempt 1
    begin, the outcome is numbered by the attempt that gave it, and no retry is armed here."""
    d = Driver(order, "o-1")
    boom = {"type": "ValueError", "message": "boom", "traceback": "", "non_retryable": False}
    assert d.run.apply(d.run.begin(), st.ActivityOutcome(1, 3, True, "x"), d.clock, RAND) is False  # not final
    step = d.apply(st.ActivityOutcome(1, 3, True, "charged", final=True))
    assert [(e.type, e.attrs["attempt"]) for e in step.events] == [(E.ACTIVITY_COMPLETED, 3)]
    assert d.run.apply(d.run.begin(), st.ActivityOutcome(1, 3, True, "again", final=True), d.clock, RAND) is False
    d.signal("go", "yes")
    step = d.apply(st.ActivityOutcome(2, 4, False, boom, final=True))
    assert [(e.type, e.attrs["attempt"], e.attrs["retry_in"]) for e in step.events[:1]] == [
        (E.ACTIVITY_FAILED, 4, None)]
    assert not [e for e in step.effects if isinstance(e, st.ArmRetry)]
    assert d.state.status is WorkflowStatus.FAILED
    assert "after 4 attempt(s)" in d.state.error["message"]  # the workflow saw the sender's count

def test_a_signal_that_arrives_as_the_run_closes_is_recorded_before_the_close_and_replays() -> None:
    d = Driver(one_signal)
    step = d.apply(st.SignalReceived("go", "first"), st.SignalReceived("go", "second"),
                   st.SignalReceived("other", 3))
    assert [e.type for e in step.events] == [E.SIGNAL_RECEIVED] * 3 + [E.WORKFLOW_COMPLETED]
    assert [e.attrs.get("payload") for e in step.events[:3]] == ["first", "second", 3]
    assert all(e.attrs.get("deferred") for e in step.events[:3])
    assert step.status is WorkflowStatus.COMPLETED and step.result == "first"
    assert [type(e) for e in step.effects].count(st.Observed) == 3
    # a closed run takes nothing more: the caller tells the sender
    assert d.run.apply(d.run.begin(), st.SignalReceived("go"), d.clock, RAND) is False
    # and the recorded history replays with no new command
    inst, new = replay(one_signal, d.history)
    assert new == [] and inst.finished


def test_a_stuck_run_keeps_its_inputs_deferred_and_matching_code_resumes_it() -> None:
    d = Driver(order, "o-1")
    d.apply(st.ActivityOutcome(1, 1, True, "charged"))

    def changed(ctx: Any, order_id: str) -> Any:
        ctx.sleep(1)
        return None

    step = d.deploy(changed)
    assert d.run.stuck is not None and step.error["type"] == "NonDeterminismError"
    before = len(d.history)
    step = d.apply(st.SignalReceived("go", "kept"), st.CancelRequested())
    assert [e.type for e in step.events] == [E.SIGNAL_RECEIVED, E.CANCEL_REQUESTED]
    assert all(e.attrs["deferred"] for e in step.events) and step.effects[1:] == []
    _, again = d.load(changed)
    assert again.error is None  # the same reason is not written again

    step = d.deploy(order)  # the original code is back
    assert step.error == {}
    # the kept signal was processed (ship scheduled), then the cancel, seen at the next blocking call;
    # an activity scheduled in the step that closes the run is never sent
    assert d.types()[before:] == [E.SIGNAL_RECEIVED, E.CANCEL_REQUESTED, E.ACTIVITY_SCHEDULED, E.WORKFLOW_CANCELED]
    assert d.state.status is WorkflowStatus.CANCELED
    _, new = replay(order, d.history)
    assert new == []


def napper(ctx: Any) -> Any:
    ctx.receive_signal("go").receive()
    ctx.sleep(60)
    return ctx.execute_activity("wake_up")


def test_work_a_resumed_stuck_run_owed_is_timed_from_when_it_is_done() -> None:
    """A signal kept while the run was stuck is processed when matching code comes back, an hour later:
    the sleep it leads to lasts its 60 s from then (as Temporal starts a timer when the workflow task that
    asks for it completes), not from when the signal arrived, which would fire it at once."""
    d = Driver(napper)
    d.deploy(None)  # the code is gone: the run is stuck
    d.apply(st.SignalReceived("go"), dt=2)
    d.clock += 3600
    step = d.deploy(napper)
    (timer,) = [e for e in step.effects if isinstance(e, st.ArmTimer)]
    assert timer.due == pytest.approx(d.clock + 60)
    assert step.events[-1].type == E.TIMER_STARTED and step.events[-1].timestamp == pytest.approx(d.clock)


def test_terminate_closes_a_stuck_run_without_its_code() -> None:
    d = Driver(order, "o-1")
    step = d.deploy(None)  # the workflow's code is gone
    assert step.error["type"] == "ConfigurationError"
    step = d.apply(st.Terminate("operator says so"))
    assert step.status is WorkflowStatus.CANCELED
    assert step.error["type"] == "Terminated" and "operator says so" in step.error["message"]
    assert d.types()[-1] == E.WORKFLOW_TERMINATED


def test_cancel_closes_a_run_whose_code_is_unknown_and_never_ran() -> None:
    d = Driver(None, "o-1", name="order")
    assert d.run.stuck is not None and d.types() == [E.WORKFLOW_STARTED]
    step = d.apply(st.CancelRequested())
    assert step.status is WorkflowStatus.CANCELED
    assert d.types() == [E.WORKFLOW_STARTED, E.CANCEL_REQUESTED, E.WORKFLOW_CANCELED]


def test_catch_up_follows_another_process_and_refuses_what_it_cannot_follow() -> None:
    a = Driver(order, "o-1")
    b_driver, _ = a.load(order)
    a.apply(st.ActivityOutcome(1, 1, True, "charged"))
    assert b_driver.catch_up(a.history[b_driver.version:]) is True
    assert b_driver.version == len(a.history)
    a.apply(st.SignalReceived("go", "yes"))
    assert b_driver.catch_up(a.history[b_driver.version:-2]) is False  # a signal without its commands


# --- replay holds every recorded step to exactly its commands ----------------------------------------
def recorded_order() -> list[Event]:
    d = Driver(order, "o-1")
    d.apply(st.ActivityOutcome(1, 1, True, "charged"))
    d.apply(st.SignalReceived("go", "yes"))
    d.apply(st.ActivityOutcome(2, 1, True, "shipped"))
    return d.history


STEP_ENDS = [3, 4, 7, 9]  # started+charge | charge done | signal+ship | ship done+completed


def test_the_recorded_history_is_made_of_the_steps_above() -> None:
    history = recorded_order()
    assert len(history) == STEP_ENDS[-1]
    for end in STEP_ENDS[:-1]:
        assert history[end].type not in (E.ACTIVITY_SCHEDULED, E.WORKFLOW_COMPLETED, E.ACTIVITY_STARTED)


@pytest.mark.parametrize("end", STEP_ENDS)
def test_every_stored_prefix_of_the_history_replays_clean(end: int) -> None:
    _, new = replay(order, recorded_order()[:end])
    assert new == []


@pytest.mark.parametrize("position", range(4))
def test_an_extra_command_at_any_step_is_caught_even_at_the_end_of_the_history(position: int) -> None:
    """Code that issues one more activity in step `position`, replayed against the history that ends
    with that step: the new command is never appended after the old history."""
    history = recorded_order()[:STEP_ENDS[position]]
    calls = {"n": 0}

    def extra_at(ctx: Any, order_id: str) -> Any:
        def step(fn: Any) -> Any:
            if calls["n"] == position:
                ctx.start_activity("audit", order_id)
            calls["n"] += 1
            return fn()

        charged = step(lambda: ctx.execute_activity("charge", order_id))
        go = step(lambda: ctx.receive_signal("go").receive())
        shipped = step(lambda: ctx.execute_activity("ship", [charged, go]))
        step(lambda: None)
        return shipped

    with pytest.raises(NonDeterminismError, match="audit"):
        replay(extra_at, history)


@pytest.mark.parametrize(("end", "diverges"), [(3, False), (4, False), (7, True), (9, True)])
def test_a_missing_command_is_caught_at_the_step_that_recorded_it(end: int, diverges: bool) -> None:
    def fewer(ctx: Any, order_id: str) -> Any:
        charged = ctx.execute_activity("charge", order_id)
        go = ctx.receive_signal("go").receive()
        ctx.receive_signal("never").receive()  # where the original ships
        return [charged, go]

    if not diverges:  # the same as the original up to here
        assert replay(fewer, recorded_order()[:end])[1] == []
        return
    with pytest.raises(NonDeterminismError, match=r"event #6 records activity 'ship' \(seq 2\)"):
        replay(fewer, recorded_order()[:end])


def test_reordered_commands_are_caught() -> None:
    def two(ctx: Any) -> Any:
        a = ctx.start_activity("a")
        b = ctx.start_activity("b")
        return [a.result(), b.result()]

    def swapped(ctx: Any) -> Any:
        b = ctx.start_activity("b")
        a = ctx.start_activity("a")
        return [a.result(), b.result()]

    d = Driver(two)
    assert [e.attrs.get("name") for e in d.history if e.type == E.ACTIVITY_SCHEDULED] == ["a", "b"]
    with pytest.raises(NonDeterminismError, match=r"event #2 records activity 'a' \(seq 1\)"):
        replay(swapped, d.history)
    assert cmds.describe(cmds.ScheduleActivity(1, "a")) == "activity 'a' (seq 1)"


def test_an_attempt_without_a_permit_waits_and_its_permit_is_returned_when_it_ends() -> None:
    """An executor that enforces activity limits (core/limits.py): a refused attempt records
    `activity_waiting` and a durable wait, not a start; a granted one may be held back to its reserved start;
    every end of an attempt, a lost one's too, and the close of the run with attempts still running give
    their permits back."""
    answers: dict[tuple[int, int], Any] = {(1, 1): Refused(T0 + 5, "concurrency", "k"),
                                          (2, 1): Granted(T0 + 1_000)}
    asked: list[tuple[str, int, int]] = []

    def permit(name: str, input: Any, attempt: Holder, now: float) -> Any:
        asked.append((name, attempt.seq, attempt.attempt))
        return answers.pop((attempt.seq, attempt.attempt), Granted(now))

    d = Driver(order, "o-1", permit=permit)
    assert d.types()[-1] == E.ACTIVITY_WAITING and d.history[-1].attrs == {
        "seq": 1, "attempt": 1, "until": T0 + 5, "limit": "k", "why": "concurrency"}
    assert d.effects == [st.AwaitPermit(1, 1, T0 + 5, "k", "concurrency")]
    step = d.apply(st.AttemptDue(1, 1))
    assert [e.type for e in step.events] == [E.ACTIVITY_STARTED]
    assert step.effects == [st.DispatchAttempt(1, 1, "charge", "o-1", {})]
    lost = {"type": "WorkerLost", "message": "lost", "traceback": "", "non_retryable": False}
    step = d.apply(st.ActivityOutcome(1, 1, False, lost))  # undecided: the scheduler found it lost
    assert st.ReturnPermit(1, 1, "charge", "o-1") in step.effects
    d.apply(st.AttemptDue(1, 2))
    d.apply(st.ActivityOutcome(1, 2, True, "charged"))
    step = d.apply(st.SignalReceived("go", "yes"))
    assert step.effects[-1] == st.DispatchAttempt(2, 1, "ship", ["charged", "yes"], {}, T0 + 1_000)
    assert step.events[-1].attrs["start_at"] == T0 + 1_000
    step = d.apply(st.Terminate("enough"))
    assert st.ReturnPermit(2, 1, "ship", ["charged", "yes"]) in step.effects  # it reports to no one now
    assert asked == [("charge", 1, 1), ("charge", 1, 1), ("charge", 1, 2), ("ship", 2, 1)]
