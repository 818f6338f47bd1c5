"""The builders of the fleet's scripts (beluga/lua/*.lua): each names its KEYS and ARGV in the order of
the script's header, so callers pass them by keyword (see beluga.lua). `Fleet` fills them in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from beluga.lua import Call, arg, key, part, tail
from beluga.stores.redis_scripts import AppendCall


class PushReply(IntEnum):
    """What push.lua answers (PushCall)."""

    QUEUED = 0  # and the shard's wake task is on its way
    QUEUED_BEFORE = 1  # by an earlier try of this request, which may not have woken the run
    QUEUED_WAKE = 2  # and the caller must send the shard's wake task
    NO_RUN = -1
    CLOSED = -2


class RequeueReply(IntEnum):
    """What requeue.lua answers (RequeueCall)."""

    TAKEN = 0  # a worker, or another caller, came first
    REQUEUED = 1  # given its new deadline and waiting record
    RETIRED = -1  # its run closed or moved on


REPORT_QUEUED = -1  # report_and_append.lua: the report was queued for the coordinator (else the append's reply)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginCall(Call):
    """Take a run's coordinator lease and read the run: {} when held, else the run as read."""

    SCRIPT: ClassVar[str] = "begin.lua"
    lease_key: str = key()
    run_key: str = key()
    inbox_key: str = key()
    events_key: str = key()
    token: str = arg()
    ttl_ms: int = arg()
    limit: int = arg()
    known_version: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportCall(Call):
    """An attempt's report, then `begin`: retire the attempt, queue the report, take the lease if free."""

    SCRIPT: ClassVar[str] = "report.lua"
    begin: BeginCall = part(BeginCall)
    running_info_key: str = key()
    dirty_key: str = key()
    dispatched_key: str = key()
    report: bytes = arg()
    seq: int = arg()
    member: str = arg()
    next_attempt: int | None = arg()
    now: float = arg()
    workflow_id: str = arg()
    next_deadline: float = arg()
    heartbeat: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportAndAppendCall(Call):
    """An attempt's report and the append it leads to: the store's `append` (its dispatched_key the
    shard's one) plus what the report needs. -1 when the report was queued instead."""

    SCRIPT: ClassVar[str] = "report_and_append.lua"
    append: AppendCall = part(AppendCall)
    running_info_key: str = key()
    dirty_key: str = key()
    report: bytes = arg()
    seq: int = arg()
    member: str = arg()
    next_attempt: int | None = arg()
    now: float = arg()
    next_deadline: float = arg()
    heartbeat: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimCall(Call):
    """Start an attempt if still allowed, moving its deadline: [] when stale, else [1, heartbeat details
    or None]."""

    SCRIPT: ClassVar[str] = "claim.lua"
    dispatched_key: str = key()
    running_info_key: str = key()
    beats_key: str = key()
    waiting_key: str = key()
    run_key: str = key()
    seq: int = arg()
    member: str = arg()
    expiry: float = arg()
    info: bytes | None = arg()
    run_id: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReclaimCall(Call):
    """Claim a lost attempt whose deadline is still the lapsed one and, in the same step, queue its
    failure and retire it: 1 when claimed, 0 when another caller (or the attempt itself) came first."""

    SCRIPT: ClassVar[str] = "reclaim.lua"
    dispatched_key: str = key()
    running_info_key: str = key()
    inbox_key: str = key()
    dirty_key: str = key()
    waiting_key: str = key()
    member: str = arg()
    deadline: float = arg()
    report: bytes = arg()
    now: float = arg()
    workflow_id: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class RequeueCall(Call):
    """An untaken attempt past its deadline: a new deadline and waiting record (1), retired when its run
    closed or moved on (-1), or 0 when a worker or another caller came first."""

    SCRIPT: ClassVar[str] = "requeue.lua"
    dispatched_key: str = key()
    waiting_key: str = key()
    run_key: str = key()
    member: str = arg()
    deadline: float = arg()
    new_deadline: float = arg()
    record: bytes = arg()
    run_id: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseCall(Call):
    """Release the lease if still ours: how many messages wait in the inbox."""

    SCRIPT: ClassVar[str] = "release.lua"
    lease_key: str = key()
    inbox_key: str = key()
    token: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainTimersCall(Call):
    """Move a shard's due timer messages into their runs' inboxes: [how many, whether to send the wake task]."""

    SCRIPT: ClassVar[str] = "drain_timers.lua"
    timers_key: str = key()
    wake_key: str = key()
    waking_key: str = key()
    dirty_key: str = key()
    now: float = arg()
    limit: int = arg()
    tag: str = arg()
    ttl_ms: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepCall(Call):
    """A shard's runs with messages waiting since before `cutoff` and no coordinator, added to its wake set:
    [how many, whether to send the wake task]."""

    SCRIPT: ClassVar[str] = "sweep.lua"
    dirty_key: str = key()
    wake_key: str = key()
    waking_key: str = key()
    cutoff: float = arg()
    now: float = arg()
    tag: str = arg()
    limit: int = arg()
    ttl_ms: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class StartCall(Call):
    """A client starts a run with its start message queued: b'' when created, b'=<run id>' when this
    request created the current run already, with a signal b'!<push reply><run id>' when the signal went
    to the open run instead, else the id of the open run that blocks it."""

    SCRIPT: ClassVar[str] = "start.lua"
    run_key: str = key()
    events_key: str = key()
    inbox_key: str = key()
    dirty_key: str = key()
    timers_key: str = key()
    requests_key: str = key()
    wake_key: str = key()
    waking_key: str = key()
    run_id: str = arg()
    status: str = arg()
    summary: bytes = arg()
    workflow_type: str = arg()
    created: float = arg()
    updated: float = arg()
    request_id: str | None = arg()
    workflow_id: str = arg()
    start_message: bytes = arg()
    index_prefix: str = arg()
    timeout_due: float | None = arg()
    timeout_member: bytes | None = arg()
    signal_message: bytes | None = arg()
    now: float = arg()
    ttl_ms: int = arg()
    attrs: str | None = arg(None)  # beluga/stores/redis_search.py `entries`: its search attributes' index entries
    events: Sequence[bytes] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class PushCall(Call):
    """A client's input, queued only while the run is open: 0 queued, 2 queued and the caller must send the
    shard's wake task, 1 queued before (same request id), -1 no such run, -2 the run is closed."""

    SCRIPT: ClassVar[str] = "push.lua"
    run_key: str = key()
    inbox_key: str = key()
    requests_key: str = key()
    dirty_key: str = key()
    wake_key: str = key()
    waking_key: str = key()
    message: bytes = arg()
    request_id: str | None = arg()
    workflow_id: str = arg()
    now: float = arg()
    ttl_ms: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCall(Call):
    """The fleet's own message for a run (an activity's report, a child's outcome, a lost attempt):
    queued and the run marked dirty in one step (a script, so that a WAIT can follow on its connection)."""

    SCRIPT: ClassVar[str] = "queue.lua"
    inbox_key: str = key()
    dirty_key: str = key()
    message: bytes = arg()
    now: float = arg()
    workflow_id: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeCall(Call):
    """Runs of one shard need a coordinator: 1 when the caller must send the shard's wake task, else 0."""

    SCRIPT: ClassVar[str] = "wake.lua"
    wake_key: str = key()
    waking_key: str = key()
    ttl_ms: int = arg()
    workflow_ids: Sequence[str] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeWakesCall(Call):
    """The shard's wake task takes the next runs to coordinate: their workflow ids, none when done (or,
    with `keep`, none for now: the task looks again shortly, holding the shard's waking lease)."""

    SCRIPT: ClassVar[str] = "take_wakes.lua"
    wake_key: str = key()
    waking_key: str = key()
    limit: int = arg()
    ttl_ms: int = arg()
    keep: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitCall(Call):
    """An attempt asks for a permit of its activity's limit: [0, start] granted, else [1, ask again at, why]."""

    SCRIPT: ClassVar[str] = "permit.lua"
    tat_key: str = key()
    holders_key: str = key()
    waiters_key: str = key()
    slots_key: str = key()
    waiting_key: str = key()
    now: float = arg()
    interval: float = arg()
    burst: int = arg()
    max_concurrent: int = arg()
    holder: str = arg()
    lease: float = arg()
    poll: float = arg()
    horizon: float = arg()
    lead: float = arg()
    kept: float = arg()
    waiter: bytes = arg()
    score: float = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class StartGateCall(Call):
    """An attempt of a rate-limited activity is about to start: "0", or the seconds to wait first."""

    SCRIPT: ClassVar[str] = "start_gate.lua"
    starts_key: str = key()
    count: int = arg()
    window: float = arg()
    holder: str = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnPermitCall(Call):
    """An attempt ended: return its concurrency permit, handed to the first waiter; that waiter's timer
    member, to wake it, or None."""

    SCRIPT: ClassVar[str] = "return_permit.lua"
    holders_key: str = key()
    waiters_key: str = key()
    waiting_key: str = key()
    holder: str = arg()
    own: bytes = arg()
    now: float = arg()
    hold: float = arg()
