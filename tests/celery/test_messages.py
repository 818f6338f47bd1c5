"""An attempt's outcome through the inbox: the sender's retry decision comes back as it was made."""

from __future__ import annotations

import pytest

from beluga.celery import messages
from beluga.core import steps as st
from beluga.core.retry import GiveUp, Retry

ERR = {"type": "ValueError", "message": "boom", "traceback": "", "non_retryable": False}


@pytest.mark.parametrize(("outcome", "back"), [
    (st.ActivityOutcome(1, 2, False, ERR, Retry(0.5, by_sender=True)), None),   # a Celery retry
    (st.ActivityOutcome(1, 2, False, ERR, Retry(400.0)), None),                 # a durable timer
    (st.ActivityOutcome(1, 2, False, ERR), None),                               # lost: the driver decides
    (st.ActivityOutcome(1, 2, False, ERR, GiveUp("attempts spent")),
     st.ActivityOutcome(1, 2, False, ERR, GiveUp("decided by the sender"))),    # only the verdict travels
    (st.ActivityOutcome(1, 2, True, {"x": 1}),
     st.ActivityOutcome(1, 2, True, {"x": 1}, GiveUp("decided by the sender"))),  # a success: nothing to retry
])
def test_an_outcome_and_its_retry_decision_round_trip(outcome: st.ActivityOutcome,
                                                      back: st.ActivityOutcome | None) -> None:
    message = messages.encode(outcome, "run-1")
    assert messages.decode(message) == (back or outcome)
    assert ("retry_in" in message) is (outcome.decision is not None or outcome.ok)


@pytest.mark.parametrize("update", [st.UpdateRequested("u1", "add", (1, {"a": [2]}), "alice@ops"),
                                    st.UpdateRequested("u2", "finish")])
def test_an_update_round_trips(update: st.UpdateRequested) -> None:
    assert messages.decode(messages.encode(update)) == update
