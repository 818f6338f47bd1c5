"""One step of a run as the coordinator takes it, for one run or for a batch of them (batch.py): what it
plans to record (`Plan`), what coordinating a run may end with besides (`RunVanished`, `HandOn`), and
how what follows a recorded step is carried out (`after_one`) or a run left to the sweep (`left_to_sweep`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beluga.celery.fleet import Begun
from beluga.celery.outages import TRANSIENT, retry_transient
from beluga.celery.roster import Handoff
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.records import Append
from beluga.logs import get_logger
from beluga.stores.redis import on_primary

log = get_logger("beluga.coordinator")
INBOX_BATCH = 100  # inbox messages a step takes at most


@dataclass(slots=True)
class Plan:
    """A step worked out and not yet written: `append` (None when it records nothing) with the options
    of its call, the attempt the caller runs eagerly, and a stuck run's next look."""

    workflow_id: str
    begun: Begun | None  # the lease it holds (None: an attempt's report appended without one)
    run: drv.RunDriver
    step: st.Step
    append: Append | None
    options: dict[str, Any]
    eager: st.DispatchAttempt | None
    again: float | None
    started: bool = False  # it consumes the run's start message (see `metrics.run_started`)


class RunVanished(Exception):  # noqa: N818 - an outcome, not an error
    """The run vanished (was deleted) while being coordinated: nothing is left to drive. Not a stuck run
    (`RunDriver.stuck`: code that no longer matches its history), which stays and is retried."""


class HandOn(Exception):  # noqa: N818 - an outcome, not an error
    """This process cannot drive the run (its code is missing here or does not match), and a live worker
    with another version of it may: the run goes there untouched (see `roster`)."""

    def __init__(self, handoff: Handoff) -> None:
        super().__init__(f"handed on to {handoff.worker}")
        self.handoff = handoff


def left_to_sweep(workflow_id: str, exc: Exception) -> None:
    """Log why a run of a batch could not be coordinated (called handling `exc`): its inbox keeps its
    messages and the sweep wakes it again. A run that vanished is a warning, anything else an error."""
    if isinstance(exc, RunVanished):
        log.warning("%s", exc)
    else:
        log.exception("could not coordinate workflow %s (the sweep wakes it again)", workflow_id)


def after_one(action: Callable[[], Any], budget: float = 10.0) -> None:
    """One follow-up of a recorded step, retried through a short outage; a failure is logged, never
    raised (the step is recorded and will not run again; what the follow-up would have done is
    recovered by the sweeper and the attempt records)."""
    try:
        retry_transient(lambda: on_primary(action), budget)
    except TRANSIENT as exc:
        log.error("a recorded step's follow-up failed for %gs, giving up on it: %s", budget, exc)
    except Exception:
        log.exception("a recorded step's follow-up failed")
