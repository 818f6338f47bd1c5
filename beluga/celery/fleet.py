"""The fleet's shared Redis state beside the histories: run inboxes, coordinator leases, timers, activity
attempts and leases, wake-ups. One place owns every key name.

Each run's keys carry its shard's hash tag `<t>` = `<p>:{s<shard>}` (see beluga.stores.redis), and so do
the fleet's records, kept per shard, so that every script touches one slot of a Redis Cluster:

- inbox `<t>:<id>:inbox`: messages for the coordinator (signal, cancel, activity result, timer, ...)
- lease `<t>:<id>:lease`: the one coordinator allowed to append to the run
- attempts `<t>:<id>:attempts`: seq -> the attempt that may run now (stale deliveries are dropped)
- `<t>:timers`: due time -> message, drained into inboxes by the scheduler
- `<t>:running`: activity attempts in flight -> lease expiry, renewed while the worker lives
- `<t>:dispatched`, `<t>:received`: attempts sent but not started, and who took them
- `<t>:dirty`: runs whose inbox has messages, found by the sweeper should their wake-up be lost
- `<t>:wake`: runs whose inbox got messages from the scheduler and still need a coordinator

Records of the whole fleet, each read or written on its own, share the tag `{fleet}`: worker liveness
`<p>:{fleet}:worker:<name>` and the announced names `<p>:{fleet}:names:*`. The scheduler looks at every
shard. The Lua scripts that change them atomically are files in beluga/lua/, called through the builders
in `fleet_scripts`.
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from beluga import codec
from beluga.celery import messages
from beluga.celery.fleet_scripts import (
    BeginCall,
    ClaimCall,
    DrainTimersCall,
    PushCall,
    QueueCall,
    ReceiveCall,
    ReclaimCall,
    ReleaseCall,
    ReportAndAppendCall,
    ReportCall,
    StartCall,
    SweepCall,
    TakeWakesCall,
    WakeCall,
)
from beluga.core.errors import ReplicationError, WorkflowAlreadyStarted
from beluga.core.records import WorkflowState
from beluga.core.steps import ActivityOutcome
from beluga.lua import Scripts
from beluga.stores.redis import SHARDS, RedisStore, on_primary, shard_of
from beluga.stores.redis_scripts import AppendCall


class Fleet:
    def __init__(self, store: RedisStore, lease_seconds: float = 15.0) -> None:
        self.store = store
        self.redis = store.redis
        self.prefix = store.prefix
        self.lease_seconds = lease_seconds
        # a shard's wake task queued this long (a lost message, a dead worker) is sent again
        self._waking_ttl_ms = int(lease_seconds * 1000)
        self._known: set[str] = set()
        self._known_at = -1e9
        self._lua = Scripts(self.redis, [BeginCall, ReportCall, ReportAndAppendCall, ClaimCall, ReceiveCall,
                                         ReclaimCall, ReleaseCall, DrainTimersCall, SweepCall, StartCall, PushCall,
                                         QueueCall, WakeCall, TakeWakesCall])

    def shard_key(self, workflow_id: str, name: str) -> str:
        """A record of the run's shard (`<t>:running`, `<t>:dispatched`, ...), in its keys' slot."""
        return f"{self.store.tag(workflow_id)}:{name}"

    def _shard_key(self, shard: int, name: str) -> str:
        return f"{self.store.shard_tag(shard)}:{name}"

    def _fleet_key(self, name: str) -> str:
        """A record of the whole fleet (`<p>:{fleet}:worker:<name>`, ...), read or written on its own."""
        return f"{self.prefix}:{{fleet}}:{name}"

    def _begin_call(self, workflow_id: str, token: str, limit: int, known_version: int, ttl: float) -> BeginCall:
        run_key, events_key, inbox_key = self.store.keys(workflow_id)
        return BeginCall(lease_key=self.store.key(workflow_id, "lease"), run_key=run_key, inbox_key=inbox_key,
                         events_key=events_key, token=token, ttl_ms=int(ttl * 1000), limit=limit,
                         known_version=known_version)

    # --- inbox --------------------------------------------------------------------------------------
    def push(self, workflow_id: str, message: dict[str, Any]) -> None:
        """Queue a message for the run's coordinator; the run is marked dirty until its inbox is empty,
        so a message whose wake-up got lost is still found by the sweeper."""
        call = QueueCall(inbox_key=self.store.keys(workflow_id)[2], dirty_key=self.shard_key(workflow_id, "dirty"),
                         message=codec.encode(message), now=time.time(), workflow_id=workflow_id)
        self.store.replicated(lambda client: self._lua.run(call, client=client),
                              f"a {message.get('k')} message to workflow {workflow_id}", call.inbox_key)

    def push_input(self, workflow_id: str, message: dict[str, Any], request_id: str | None = None) -> int:
        """A client's input, queued only while the run is open (see push.lua): 0 queued (the run is added
        to its shard's wake set), 2 the same and the caller must send the shard's wake task, 1 queued
        before by the same request, -1 no such run, -2 the run is closed."""
        run_key, _, inbox_key = self.store.keys(workflow_id)
        t = self.store.tag(workflow_id)
        call = PushCall(
            run_key=run_key, inbox_key=inbox_key, requests_key=self.store.key(workflow_id, "requests"),
            dirty_key=f"{t}:dirty", wake_key=f"{t}:wake", waking_key=f"{t}:waking", message=codec.encode(message),
            request_id=request_id, workflow_id=workflow_id, now=time.time(), ttl_ms=self._waking_ttl_ms)
        return int(self.store.replicated(lambda client: self._lua.run(call, client=client),
                                         f"a {message.get('k')} message to workflow {workflow_id}", run_key))

    def start_run(self, state: WorkflowState, request_id: str | None = None) -> str:
        """Create the run with its start message queued (see start.lua). Returns the run id: the new one,
        or the one this request created before. Raises `WorkflowAlreadyStarted` for another open run."""
        run_key, events_key, inbox_key = self.store.keys(state.workflow_id)
        call = StartCall(
            run_key=run_key, events_key=events_key, inbox_key=inbox_key,
            dirty_key=self.shard_key(state.workflow_id, "dirty"),
            run_id=state.run_id, status=state.status.value, summary=codec.encode_state(state),
            workflow_type=state.workflow_type, created=state.created_at, updated=state.updated_at,
            request_id=request_id, workflow_id=state.workflow_id, start_message=codec.encode({"k": "start"}),
            events=tuple(codec.encode_event(e) for e in state.history))
        unconfirmed: ReplicationError | None = None
        try:
            got = self.store.replicated(lambda client: self._lua.run(call, client=client).decode(),
                                        f"the start of workflow {state.workflow_id}", run_key)
        except ReplicationError as exc:  # on the primary all the same: index it, then say so
            got, unconfirmed = exc.result, exc
        if got.startswith("="):
            return got[1:]
        if got:
            raise WorkflowAlreadyStarted(f"workflow {state.workflow_id!r} already has an open run")
        self.store.reindex(state.workflow_id, state.workflow_type, state.created_at, state.status)
        if unconfirmed is not None:
            raise unconfirmed
        return state.run_id

    # --- coordinator lease --------------------------------------------------------------------------
    def begin(self, workflow_id: str, limit: int = 100, known_version: int = 0, ttl: float = 10.0) -> Begun | None:
        """Take the run's lease and read its state; None when another coordinator holds the lease."""
        token = uuid.uuid4().hex
        return _begun(token, self._lua.run(self._begin_call(workflow_id, token, limit, known_version, ttl)))

    def report_and_begin(self, workflow_id: str, seq: int, attempt: int, message: dict[str, Any],
                         next_attempt: int | None, limit: int = 100, known_version: int = 0,
                         ttl: float = 10.0) -> Begun | None:
        """An activity attempt's outcome, in one round trip: retire the attempt and queue its report, and
        either take the lease (the report is queued after the messages already waiting, for the caller
        to record) or leave the report to the coordinator that holds the lease (None)."""
        token = uuid.uuid4().hex
        t = self.store.tag(workflow_id)
        got = self._lua.run(ReportCall(
            begin=self._begin_call(workflow_id, token, limit, known_version, ttl),
            attempts_key=self.store.key(workflow_id, "attempts"), running_key=f"{t}:running",
            running_info_key=f"{t}:running:info", dirty_key=f"{t}:dirty",
            dispatched_key=f"{t}:dispatched", received_key=f"{t}:received",
            report=codec.encode(message), seq=seq, member=_running_member(workflow_id, seq, attempt),
            next_attempt=next_attempt, now=time.time(), workflow_id=workflow_id,
            next_deadline=self.dispatch_deadline(message.get("retry_in") or 0.0), attempt=attempt))
        return _begun(token, got)

    def report_and_append(self, append_call: AppendCall, seq: int, attempt: int, message: dict[str, Any],
                          next_attempt: int | None) -> int:
        """An attempt's outcome and the events it leads to, in one round trip: `append_call` is the
        store's `append_call`, applied only if nobody touched the run (beluga/lua/report_and_append.lua).
        The messages left in the inbox, or -1 when the report was queued for the coordinator instead."""
        workflow_id = append_call.workflow_id
        t = self.store.tag(workflow_id)
        call = ReportAndAppendCall(
            append=append_call,
            running_key=f"{t}:running", running_info_key=f"{t}:running:info",
            dirty_key=f"{t}:dirty", received_key=f"{t}:received",
            report=codec.encode(message), seq=seq, member=_running_member(append_call.workflow_id, seq, attempt),
            next_attempt=next_attempt, now=time.time(),
            next_deadline=self.dispatch_deadline(message.get("retry_in") or 0.0), attempt=attempt)
        return self.store.replicated(lambda client: int(self._lua.run(call, client=client)),
                                     f"attempt {attempt} of workflow {workflow_id} seq {seq}", append_call.run_key)

    def read(self, workflow_id: str, token: str, limit: int = 100) -> Begun:
        """Re-read the run while holding its lease (after losing an append race)."""
        run_key, _, inbox_key = self.store.keys(workflow_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(run_key, "run_id", "version")
        pipe.lrange(inbox_key, 0, limit - 1)
        (run_id, version), items = pipe.execute()
        return Begun(token, run_id.decode() if run_id else None, int(version or 0), items, len(items), [])

    def release(self, workflow_id: str, token: str) -> int:
        """Give the lease back; returns how many inbox messages arrived meanwhile."""
        return int(self._lua.run(ReleaseCall(lease_key=self.store.key(workflow_id, "lease"),
                                             inbox_key=self.store.keys(workflow_id)[2], token=token)))

    # --- activity attempts --------------------------------------------------------------------------
    def claim(self, workflow_id: str, seq: int, attempt: int, run_id: str, ttl: float | None = None
              ) -> tuple[bool, Any]:
        """Start an attempt if it is still the allowed one: (False, None) for a stale delivery, else
        (True, the last heartbeat details of an earlier attempt)."""
        t = self.store.tag(workflow_id)
        got = self._lua.run(ClaimCall(
            attempts_key=self.store.key(workflow_id, "attempts"), running_key=f"{t}:running",
            running_info_key=f"{t}:running:info", beats_key=self.store.key(workflow_id, "beats"),
            received_key=f"{t}:received", dispatched_key=f"{t}:dispatched",
            seq=seq, attempt=attempt, member=_running_member(workflow_id, seq, attempt),
            expiry=time.time() + (ttl or self.lease_seconds),
            info=codec.encode({"run": run_id, "heartbeat_timeout": ttl})))
        if not got:
            return False, None
        return True, (codec.decode(got[1]) if len(got) > 1 and got[1] else None)

    def hold_lease(self, workflow_id: str, seq: int, attempt: int, run_id: str, ttl: float | None = None,
                   details: Any = None, beat: bool = False) -> None:
        """Claim (or renew) the attempt's lease for `ttl` seconds; a heartbeat also keeps its details
        for the next attempt."""
        member = _running_member(workflow_id, seq, attempt)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.shard_key(workflow_id, "running"), {member: time.time() + (ttl or self.lease_seconds)})
        pipe.hset(self.shard_key(workflow_id, "running:info"), member,
                  codec.encode({"run": run_id, "heartbeat_timeout": ttl}))
        if beat:
            pipe.hset(self.store.key(workflow_id, "beats"), str(seq), codec.encode(details))
        pipe.execute()

    def renew(self, members: list[tuple[str, int, int]]) -> None:
        if members:
            expiry = time.time() + self.lease_seconds
            pipe = self.redis.pipeline(transaction=False)
            for shard, held in _by_shard(members).items():
                pipe.zadd(self._shard_key(shard, "running"), {_running_member(*m): expiry for m in held}, xx=True)
            pipe.execute()

    # --- what the workers can run -------------------------------------------------------------------
    def publish_names(self, workflows: list[str], activities: list[str]) -> None:
        """Workers announce the workflow and activity names they have code for, so that a client
        without the code can refuse a misspelt name at the call instead of starting a run that waits."""
        pipe = self.redis.pipeline(transaction=False)
        if workflows:
            pipe.sadd(self._fleet_key("names:workflows"), *workflows)
        if activities:
            pipe.sadd(self._fleet_key("names:activities"), *activities)
        pipe.execute()

    def known_workflows(self) -> set[str]:
        return {n.decode() for n in self.redis.smembers(self._fleet_key("names:workflows"))}

    def known_activities(self) -> set[str]:
        """Activity names some worker announced; cached for a few seconds (asked on every dispatch)."""
        now = time.monotonic()
        if now - self._known_at > 5.0:
            self._known = {n.decode() for n in self.redis.smembers(self._fleet_key("names:activities"))}
            self._known_at = now
        return self._known

    # --- worker liveness ----------------------------------------------------------------------------
    def alive(self, worker: str) -> None:
        """A worker's heartbeat; its key expires `lease_seconds` after the worker dies."""
        self.redis.set(self._fleet_key(f"worker:{worker}"), 1, px=int(self.lease_seconds * 1000))

    def received(self, receipts: list[tuple[str, int, int, str, str]]) -> None:
        """Workers took these attempts' messages (workflow id, seq, attempt, run id, worker) off the
        queue but have not started them yet. If a worker dies now, or loses the message while it lives
        (a lost broker connection drops what the worker had prefetched), the message waits
        unacknowledged for the broker's visibility timeout (an hour with Redis); these records let the
        scheduler see the loss within `lease_seconds` instead: each lapses unless renewed by a worker
        that still holds the message (`hold_receipts`). An attempt that started meanwhile is left alone.
        Written in one transaction (on a Redis Cluster, one receipt after the other)."""
        until = time.time() + self.lease_seconds
        calls = [(self.shard_key(wid, "received:until"), _running_member(wid, seq, attempt),
                  ReceiveCall(received_key=self.shard_key(wid, "received"),
                              dispatched_key=self.shard_key(wid, "dispatched"),
                              member=_running_member(wid, seq, attempt),
                              info=codec.encode({"run": run_id, "worker": worker})))
                 for wid, seq, attempt, run_id, worker in receipts]
        if self.store.cluster:  # its pipelines run no scripts: each receipt on its own, its deadline first
            for until_key, member, call in calls:
                self.redis.zadd(until_key, {member: until})
                self._lua.run(call)
            return
        pipe = self.redis.pipeline(transaction=True)
        for until_key, member, call in calls:
            self._lua.run(call, client=pipe)
            pipe.zadd(until_key, {member: until})
        pipe.execute()

    def hold_receipts(self, held: list[tuple[str, int, int]]) -> None:
        """Renew the receipts of attempts whose messages this worker still holds (waiting, scheduled for
        a retry, or running): a receipt nobody renews lapses, and its attempt is dispatched again."""
        if held:
            until = time.time() + self.lease_seconds
            pipe = self.redis.pipeline(transaction=False)
            for shard, mine in _by_shard(held).items():
                pipe.zadd(self._shard_key(shard, "received:until"), {_running_member(*m): until for m in mine},
                          xx=True)
            pipe.execute()

    def backup_delay(self) -> float:
        """How long after a step the backups it arms (a child's creation, a parent's news) fire: after
        the direct way has long succeeded, unless the process doing it died."""
        return 2 * self.lease_seconds

    def dispatch_deadline(self, delay: float = 0.0) -> float:
        """When an attempt sent now (to start after `delay`) counts as lost if no worker has taken it."""
        return time.time() + delay + 2 * self.lease_seconds

    def _each_shard(self, command: str, name: str, *args: Any, **kwargs: Any) -> list[tuple[str, Any]]:
        """One command on the record `name` of every shard, in one pipeline: [(key, reply), ...]."""
        keys = [self._shard_key(shard, name) for shard in range(SHARDS)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(key, *args, **kwargs)
        return list(zip(keys, pipe.execute(), strict=True))

    def undelivered(self, now: float, queued: Any, limit: int = 100) -> list[Lost]:
        """Attempts sent but taken by no worker by their deadline, and no longer in the broker's queue
        (a worker died holding the message, or the process that sent it died first). `queued(member)`
        says whether the message still waits in the broker; those get a later deadline. Should the
        broker not answer, the attempts found so far are returned (the rest wait for the next round)."""
        out = []
        for key, members in self._each_shard("zrangebyscore", "dispatched", "-inf", now, start=0, num=limit):
            for member in members:
                wid, seq, attempt = member.decode().rsplit("\x00", 2)
                try:
                    waiting = queued(wid, int(seq), int(attempt))
                except Exception:
                    if out:
                        return out
                    raise
                if waiting:
                    self.redis.zadd(key, {member: self.dispatch_deadline()}, xx=True)
                else:
                    out.append(Lost(wid, int(seq), int(attempt), {}, key, "z"))
        return out

    def orphaned_attempts(self, now: float, limit: int = 100) -> list[Lost]:
        """Received attempts whose worker is gone, or whose receipt lapsed (no worker holds the message
        any more)."""
        lapsed = self._each_shard("zrangebyscore", "received:until", "-inf", now, start=0, num=limit)
        entries = self._each_shard("hgetall", "received")
        infos = {key: {member: codec.decode(raw) for member, raw in got.items()} for key, got in entries}
        workers = sorted({info["worker"] for shard in infos.values() for info in shard.values()})
        alive = self.redis.mget([self._fleet_key(f"worker:{w}") for w in workers]) if workers else []
        living = dict(zip(workers, alive, strict=True))
        out = []
        pipe = self.redis.pipeline(transaction=False)
        for (until_key, overdue), (key, received) in zip(lapsed, infos.items(), strict=True):
            lost = {member for member, info in received.items() if living.get(info["worker"]) is None}
            lost.update(m for m in overdue if m in received)
            gone = [m for m in overdue if m not in received]  # receipts of attempts that started or finished since
            if gone:
                pipe.zrem(until_key, *gone)
            for member in lost:
                wid, seq, attempt = member.decode().rsplit("\x00", 2)
                out.append(Lost(wid, int(seq), int(attempt), received[member], key, "h"))
        pipe.execute()
        return out

    def expired_attempts(self, now: float, limit: int = 100) -> list[Lost]:
        """Attempts whose worker stopped renewing their lease."""
        expired = [(key, members) for key, members in
                   self._each_shard("zrangebyscore", "running", "-inf", now, start=0, num=limit) if members]
        if not expired:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key, members in expired:
            pipe.hmget(f"{key}:info", members)
        out = []
        for (key, members), infos in zip(expired, pipe.execute(), strict=True):
            for member, info in zip(members, infos, strict=True):
                wid, seq, attempt = member.decode().rsplit("\x00", 2)
                out.append(Lost(wid, int(seq), int(attempt), codec.decode(info) if info else {}, key, "z"))
        return out

    def reclaim(self, lost: Lost, failure: dict[str, Any]) -> bool:
        """Claim a lost attempt (exactly one caller gets it) and, in the same atomic step, queue its
        failure for the coordinator, which decides on a new attempt under the retry policy, and retire it
        (see reclaim.lua). False when someone, or the attempt itself, came first."""
        message = messages.encode(ActivityOutcome(lost.seq, lost.attempt, False, failure, decided=False),
                                  lost.info.get("run"))
        call = ReclaimCall(
            tracking_key=lost.key, running_info_key=self.shard_key(lost.workflow_id, "running:info"),
            inbox_key=self.store.keys(lost.workflow_id)[2], attempts_key=self.store.key(lost.workflow_id, "attempts"),
            dirty_key=self.shard_key(lost.workflow_id, "dirty"),
            member=_running_member(lost.workflow_id, lost.seq, lost.attempt),
            kind=lost.how, report=codec.encode(message), seq=lost.seq, attempt=lost.attempt, now=time.time(),
            workflow_id=lost.workflow_id)
        # claimed: a lagging replica must not make this caller drop it (see on_primary)
        return bool(on_primary(self.store.replicated, lambda client: self._lua.run(call, client=client),
                               f"a lost attempt of workflow {lost.workflow_id}", call.inbox_key))

    # --- timers -------------------------------------------------------------------------------------
    def arm(self, workflow_id: str, due: float, message: dict[str, Any]) -> None:
        self.redis.zadd(self.shard_key(workflow_id, "timers"), {timer_member(workflow_id, message): due})

    def drain_timers(self, now: float, limit: int = 500) -> tuple[int, list[int]]:
        """Move the timer messages due by `now` into their runs' inboxes (at most `limit` per shard) and
        add those runs to their shards' wake sets: how many, and the shards whose wake task the caller
        must send."""
        got = self._lua.run_all([DrainTimersCall(
            timers_key=self._shard_key(shard, "timers"), wake_key=self._shard_key(shard, "wake"),
            waking_key=self._shard_key(shard, "waking"), dirty_key=self._shard_key(shard, "dirty"), now=now,
            limit=limit, tag=self.store.shard_tag(shard), ttl_ms=self._waking_ttl_ms) for shard in range(SHARDS)])
        return sum(int(n) for n, _ in got), [shard for shard, (_, send) in enumerate(got) if send]

    def sweep(self, now: float, grace: float = 2.0, limit: int = 500) -> tuple[int, list[int]]:
        """Runs with messages waiting longer than `grace` and no coordinator, added to their shards' wake
        sets: how many, and the shards whose wake task the caller must send (also those whose task was
        lost)."""
        got = self._lua.run_all([SweepCall(
            dirty_key=self._shard_key(shard, "dirty"), wake_key=self._shard_key(shard, "wake"),
            waking_key=self._shard_key(shard, "waking"), cutoff=now - grace, now=now,
            tag=self.store.shard_tag(shard), limit=limit, ttl_ms=self._waking_ttl_ms) for shard in range(SHARDS)])
        return sum(int(n) for n, _ in got), [shard for shard, (_, send) in enumerate(got) if send]

    # --- wake-ups -----------------------------------------------------------------------------------
    def wake(self, workflow_ids: Iterable[str]) -> list[int]:
        """These runs need a coordinator: added to their shards' wake sets. Returns the shards whose wake
        task the caller must send (none is queued or running yet)."""
        groups = _by_shard((wid,) for wid in workflow_ids)
        calls = [WakeCall(wake_key=self._shard_key(shard, "wake"), waking_key=self._shard_key(shard, "waking"),
                          ttl_ms=self._waking_ttl_ms, workflow_ids=tuple(w for (w,) in wids))
                 for shard, wids in groups.items()]
        got = self._lua.run_all(calls) if len(calls) > 1 else [self._lua.run(c) for c in calls]
        return [shard for shard, send in zip(groups, got, strict=True) if send]

    def take_wakes(self, shard: int, limit: int = 100) -> list[str]:
        """The next runs the shard's wake task coordinates; none once its wake set is empty, and then the
        task is done (a run woken after that sends a new one)."""
        got = self._lua.run(TakeWakesCall(wake_key=self._shard_key(shard, "wake"),
                                          waking_key=self._shard_key(shard, "waking"), limit=limit,
                                          ttl_ms=self._waking_ttl_ms))
        return [w.decode() for w in got]

    # --- closing -------------------------------------------------------------------------------------
    def closed_channel(self, workflow_id: str) -> str:
        return f"{self.prefix}:closed:{{{workflow_id}}}"

    def announce_closed(self, workflow_id: str, status: str) -> None:
        """Wake the clients waiting on `handle.result()` at once, instead of at their next poll."""
        self.redis.publish(self.closed_channel(workflow_id), status)

    # --- query replies ------------------------------------------------------------------------------
    def reply(self, key: str, value: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, codec.encode(value))
        pipe.expire(key, 60)
        pipe.execute()

    def wait_reply(self, key: str, timeout: float) -> dict[str, Any] | None:
        got = self.redis.blpop([key], timeout=max(1, int(timeout + 0.999)))
        return None if got is None else codec.decode(got[1])


@dataclass(frozen=True, slots=True)
class Lost:
    """An activity attempt that looks lost, and where it was found (see `Fleet.reclaim`)."""

    workflow_id: str
    seq: int
    attempt: int
    info: dict[str, Any]
    key: str
    how: str   # 'z': `key` is a sorted set, 'h': a hash


@dataclass(frozen=True, slots=True)
class Begun:
    """A coordinator's view of a run as it takes the lease."""

    token: str
    run_id: str | None
    version: int
    messages: list[bytes]   # the inbox's first messages, to record in order
    inbox_used: int         # how many to consume from the inbox when recording them
    newer: list[bytes]      # encoded events past the version the caller had cached


def _begun(token: str, got: list[bytes]) -> Begun | None:
    if not got:
        return None
    n = int(got[2])
    return Begun(token, got[0].decode() or None, int(got[1]), list(got[3:3 + n]), n, list(got[3 + n:]))


def timer_member(workflow_id: str, message: dict[str, Any]) -> bytes:
    """A durable timer's entry in the timer set: the same message for the same run is one entry, so
    arming it again (a retried step) only moves its due time."""
    return workflow_id.encode() + b"\x00" + codec.encode(message)


def _by_shard(items: Iterable[Any]) -> dict[int, list[Any]]:
    """Items whose first element is a workflow id, grouped by its shard."""
    out: dict[int, list[Any]] = defaultdict(list)
    for item in items:
        out[shard_of(item[0])].append(item)
    return out


def _running_member(workflow_id: str, seq: int, attempt: int) -> str:
    return f"{workflow_id}\x00{seq}\x00{attempt}"
