"""Running one activity attempt and reporting it: what every path that runs an attempt shares (an
activity task, an eager attempt, a wake batch's), and how an attempt is named in Celery and Flower."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded

from beluga.activity import ActivityInfo, run_with_info
from beluga.celery import messages, outcome
from beluga.celery.holds import renewing
from beluga.celery.outages import TRANSIENT, Quiet, retry_transient
from beluga.celery.report import AttemptReport
from beluga.core.definitions import effective_retry
from beluga.core.failure import attempt_timed_out, to_failure
from beluga.core.limits import Holder
from beluga.core.retry import decide_retry, retry_delay, sender_can_decide
from beluga.core.steps import ActivityOutcome
from beluga.logs import get_logger

if TYPE_CHECKING:
    from beluga.celery.clock import FleetClock
    from beluga.celery.process import FleetProcess

log = get_logger("beluga.tasks")
# Through an outage each process logs a topic's first error, then a line every ten seconds at most.
reporting = Quiet(log, "reporting activity attempts")
CELERY_RETRY_LIMIT = 300.0  # longer backoffs go through the durable timer set, not broker countdowns
DUE = "_due"  # in a Celery retry's options: when the attempt may start, on the fleet's clock
ETA_TOLERANCE = 0.1  # seconds a worker's wall clock may be off the fleet's before a retry's ETA is moved


def attempt_repr(workflow_id: str, run_id: str, seq: int, attempt: int) -> str:
    """How an activity task's arguments show in Flower and in the broker's message headers."""
    return f"({workflow_id!r}, {run_id!r}, seq={seq}, attempt={attempt})"


def activity_task_id(run_id: str, seq: int) -> str:
    """The Celery task id of every attempt of the activity call `seq` of run `run_id`: the run's id (a
    random UUID) and the call's number, which every process derives alike (a name-based UUID cost more
    than the rest of an eager attempt's bookkeeping)."""
    return f"{run_id}-{seq}"


def attempt_kwargsrepr(workflow_id: str) -> str:
    """How a task's keyword arguments show in Flower: its workflow id, so that the search
    `kwargs:workflow_id=<id>` finds exactly that run's tasks (the tasks take no keyword arguments)."""
    return repr({"workflow_id": workflow_id})


def eta_on_local_clock(request: Any, clock: FleetClock) -> None:
    """A Celery retry's ETA is given on the fleet's clock (its `DUE`), but the worker's consumer releases
    the message when the worker's own wall clock reaches it: a worker whose clock is 120 s behind would
    start the retry 120 s late, one 120 s ahead at once. Called as the consumer takes the message (it
    never waits on Redis: the clock's last measurement, which the scheduler keeps fresh), this moves the
    ETA by how far this worker's wall clock is off the fleet's. It sets Celery's request `_eta` (read
    by the consumer right after the `task_received` signal); should a Celery version lack it, the
    message is released by the worker's own clock, and `wait_until_due` still keeps it from starting
    early."""
    now = clock.cached()
    eta = getattr(request, "_eta", None)
    if now is None or not isinstance(eta, datetime):
        return
    off = time.time() - now  # this worker's wall clock minus the fleet's
    if abs(off) > ETA_TOLERANCE:
        request._eta = eta + timedelta(seconds=off)


def wait_until_due(rt: FleetProcess, options: dict[str, Any]) -> None:
    """Hold back an attempt delivered before its due time (a Celery retry, `DUE`), should its ETA not have
    been put on this worker's clock (see `eta_on_local_clock`), or that clock have moved since. The wait
    is at most the retry's delay (CELERY_RETRY_LIMIT); its message is held meanwhile, so its deadline is
    renewed."""
    due = options.get(DUE)
    if isinstance(due, (int, float)):
        early = min(float(due) - rt.fleet.clock.now(), CELERY_RETRY_LIMIT)
        if early > 0:
            log.info("attempt due in %.3fs by the fleet's clock (this worker's clock is ahead): waiting", early)
            time.sleep(early)


def heartbeat_recorder(rt: FleetProcess, workflow_id: str, seq: int, attempt: int,
                       heartbeat_timeout: float | None) -> Callable[[Any], None]:
    """What `workflow.heartbeat(details)` does for this attempt: record the details for the next attempt
    and, with a heartbeat timeout, move the attempt's deadline (see `Fleet.heartbeat`)."""

    def beat(details: Any) -> None:
        rt.check(details)
        try:
            rt.fleet.heartbeat(workflow_id, seq, attempt, heartbeat_timeout, details)
            renewing.recovered()
        except TRANSIENT as exc:  # not the activity's problem: its lease lapses if Redis stays away too long
            renewing.error("could not record a heartbeat of attempt %s of %s seq %s", attempt, workflow_id, seq,
                            exc=exc)

    return beat


def run_attempt(rt: FleetProcess, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int, input: Any,
                options: dict[str, Any], details: Any, heartbeat_timeout: float | None, celery_retries: bool = True
                ) -> tuple[dict[str, Any], float | None]:
    """Run one claimed attempt; returns the inbox message reporting it and the retry delay (see
    `settle_attempt`)."""
    info = ActivityInfo(workflow_id, run_id, defn.name, seq, attempt, details,
                        _beat=heartbeat_recorder(rt, workflow_id, seq, attempt, heartbeat_timeout))

    began = [0.0]

    def call() -> Any:
        if defn.limit is not None:  # the rate's last check, right before the start (an outage skips it)
            try:
                rt.coordinator.permits.gate(defn.name, input, Holder(workflow_id, run_id, seq, attempt))
            except TRANSIENT as exc:
                log.warning("could not check the rate limit of %s before attempt %s of %s seq %s: %s",
                            defn.name, attempt, workflow_id, seq, exc)
        began[0] = time.monotonic()
        return defn.call(input)

    try:
        result = run_with_info(info, call)
    except BaseException as exc:
        return settle_attempt(rt, defn, workflow_id, run_id, seq, attempt, options, False, exc, celery_retries)
    timeout = options.get("timeout")
    if timeout and time.monotonic() - began[0] > timeout:
        # Celery's soft time limit came late (its timer runs in the worker's busy main process): a result
        # past the timeout is not taken, as the in-process executor and Temporal do not take one
        late = TimeoutError(attempt_timed_out(defn.name, attempt, timeout)["message"])
        return settle_attempt(rt, defn, workflow_id, run_id, seq, attempt, options, False, late, celery_retries)
    return settle_attempt(rt, defn, workflow_id, run_id, seq, attempt, options, True, result, celery_retries)


def settle_attempt(rt: FleetProcess, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int,
                   options: dict[str, Any], ok: bool, value: Any, celery_retries: bool = True
                   ) -> tuple[dict[str, Any], float | None]:
    """The inbox message reporting an attempt that ended (`value`: its result, or its exception) and the
    retry delay. A retry up to CELERY_RETRY_LIMIT away is the task's own Celery retry when
    `celery_retries` (not for a limited activity, whose next attempt asks for a permit), else a durable
    timer; a policy the sender cannot apply alone is left to the coordinator, which reads the history."""
    if ok:
        try:
            rt.check(value)
            return messages.encode(ActivityOutcome(seq, attempt, True, value), run_id), None
        except BaseException as exc:  # noqa: BLE001 - an unsendable result fails the attempt
            value = exc
    exc = value
    if isinstance(exc, SoftTimeLimitExceeded):
        exc = TimeoutError(attempt_timed_out(defn.name, attempt, options.get("timeout"))["message"])
    failure = to_failure(exc)
    outcome.note_failure(exc)  # raised by the task once the attempt is reported (outcome.settle)
    outcome.note_earlier(rt.store, workflow_id, run_id, seq, attempt)  # for its task event
    policy = effective_retry(options, defn)
    by_celery = celery_retries and defn.limit is None
    decision = (decide_retry(policy, failure, attempt, random.random(),
                             sender_limit=CELERY_RETRY_LIMIT if by_celery else None)
                if sender_can_decide(policy) else None)
    return messages.encode(ActivityOutcome(seq, attempt, False, failure, decision), run_id), retry_delay(decision)


def report_attempt(rt: FleetProcess, defn: Any, workflow_id: str, run_id: str, seq: int, attempt: int, input: Any,
                   options: dict[str, Any], details: Any, heartbeat_timeout: float | None, heartbeat: bool,
                   celery_retries: bool = True, ended: tuple[bool, Any] | None = None
                   ) -> tuple[dict[str, Any], bool, float | None] | None:
    """Run a started attempt (or take how it `ended`, (ok, result or exception), when it ran elsewhere: an
    async attempt on the process's event loop) and report it, handing the report to the coordinator right here. Returns
    (the report's message, whether Celery is to send the next attempt, after how long), or None when the
    attempt was given up (Redis stayed away past the lease: its deadline lapses and the scheduler
    dispatches it again)."""
    budget = rt.settings.lease_seconds  # how long Redis may be away before this attempt is given up
    try:
        if ended is None:
            message, next_delay = run_attempt(rt, defn, workflow_id, run_id, seq, attempt, input, options,
                                              details, heartbeat_timeout, celery_retries)
        else:
            message, next_delay = settle_attempt(rt, defn, workflow_id, run_id, seq, attempt, options, *ended,
                                                 celery_retries=celery_retries)
        celery_retry = message.get("celery_retry", False)
        report = AttemptReport.of(seq, attempt, message, attempt + 1 if celery_retry else None, heartbeat, options)
        # Redis away: keep trying (the attempt's deadline is renewed meanwhile); reporting twice is
        # harmless, a stale report is ignored. Past the budget the attempt is given up: its deadline
        # lapses and any live worker's scheduler dispatches a new attempt.
        retry_transient(lambda: rt.coordinate_here(workflow_id, report), budget,
                        on_error=lambda exc: reporting.error("could not report attempt %s of %s seq %s; "
                                                              "trying again", attempt, workflow_id, seq, exc=exc))
        reporting.recovered()
    except Exception as exc:
        reporting.error("giving up reporting attempt %s of %s seq %s: it is dispatched again within %gs",
                         attempt, workflow_id, seq, 2 * budget, exc=exc)
        return None
    return message, celery_retry, next_delay

