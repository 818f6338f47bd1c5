"""The fleet's shared Redis state beside the histories: run inboxes, coordinator leases, timers, activity
attempts and leases, wake-ups. One place owns every key name.

Each run's keys carry its shard's hash tag `<t>` = `<p>:{s<shard>}` (see beluga.stores.redis), and so do
the fleet's records, kept per shard, so that every script touches one slot of a Redis Cluster:

- inbox `<t>:<id>:inbox`: messages for the coordinator (signal, cancel, activity result, timer, ...)
- lease `<t>:<id>:lease`: the one coordinator allowed to append to the run
- `<t>:timers`: due time -> message, drained into inboxes by the scheduler
- `<t>:dispatched`: every activity attempt allowed to run -> its one deadline: set by the append that
  dispatches it (schedule-to-start), renewed by the worker that holds its message (or runs it eagerly),
  moved to the heartbeat timeout by the claim of an attempt that promised heartbeats, dropped by its report
  or its reclaim (a delivery of an attempt without a deadline is stale, and skipped)
- `<t>:running:info`: attempts that promised heartbeats -> their run id and heartbeat timeout
- `<t>:waiting`: attempts sent through the broker that no worker has taken yet -> their message (kept
  to send again), queue, schedule-to-start deadline and how often the scheduler looked (`Waiting`);
  written by the sender before it publishes, dropped by the claim that starts the attempt
- `<t>:dirty`: runs whose inbox has messages, found by the sweeper should their wake-up be lost
- `<t>:wake`: runs whose inbox got messages from the scheduler and still need a coordinator

Records of the whole fleet, each read or written on its own, share the tag `{fleet}`: the announced
 names `<p>:{fleet}:names:*`, the live workers (`<p>:{fleet}:workers`, a set of node names, and
`<p>:{fleet}:worker:<name>`, what each has, with a time to live; see `roster`), and the queues that live
workers consume `<p>:{fleet}:queues` (queue -> until when a worker said so). The scheduler looks at every
shard. The Lua scripts that change them atomically are files in beluga/lua/, called through the builders
in `fleet_scripts`.

Every time written here or compared with one (deadlines, timer due times, dirty marks) is on the fleet's
one clock, the history Redis's (`self.clock`, see beluga/celery/clock.py), never the process's own.
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from beluga import codec
from beluga.bridge import pause
from beluga.celery import messages
from beluga.celery.clock import FleetClock, redis_time
from beluga.celery.fleet_scripts import (
    BeginCall,
    ClaimCall,
    DrainTimersCall,
    PushCall,
    PushReply,
    QueueCall,
    ReclaimCall,
    ReleaseCall,
    ReportAndAppendCall,
    ReportCall,
    RequeueCall,
    RequeueReply,
    StartCall,
    SweepCall,
    TakeWakesCall,
    WakeCall,
)
from beluga.celery.outages import TRANSIENT
from beluga.core.errors import ReplicationError, WorkflowAlreadyStarted
from beluga.core.records import WorkflowState
from beluga.core.steps import ActivityOutcome
from beluga.lua import Scripts
from beluga.stores import redis_search
from beluga.stores.redis import RedisStore, on_primary
from beluga.stores.redis_keys import SHARDS, shard_of
from beluga.stores.redis_scripts import STARTED_BEFORE, AppendCall, was_created

SIGNALLED = "!"  # start.lua: the signal of a signal-with-start went to the open run (then push.lua's answer)
IDENTITY_TTL = 30.0  # seconds a process trusts its fleet's id before reading it again


class Fleet:
    def __init__(self, store: RedisStore, lease_seconds: float = 15.0, undelivered_lapse: bool = True) -> None:
        """`undelivered_lapse`: whether an attempt that no worker has taken counts as lost at its
        schedule-to-start deadline (a Redis broker, whose queue the scheduler can look into). An AMQP broker
        redelivers what a lost worker held by itself: there, only an attempt a worker took (and stopped
        renewing) lapses."""
        self.store = store
        self.redis = store.redis
        self.prefix = store.prefix
        self.names = store.names  # every key name (beluga/stores/redis_keys.py)
        self.lease_seconds = lease_seconds
        self.undelivered_lapse = undelivered_lapse
        # a shard's wake task queued this long (a lost message, a dead worker) is sent again
        self._waking_ttl_ms = int(lease_seconds * 1000)
        self._known: set[str] = set()
        self._known_at = -1e9
        self.clock = FleetClock(self._server_time)
        self._identity: str | None = None
        self._identity_at = 0.0
        self._lua = Scripts(self.redis, [BeginCall, ReportCall, ReportAndAppendCall, ClaimCall, ReclaimCall,
                                         ReleaseCall, DrainTimersCall, SweepCall, StartCall, PushCall, QueueCall,
                                         WakeCall, TakeWakesCall, RequeueCall])

    def _server_time(self) -> float:
        """The history Redis's `TIME`. On a Redis Cluster, always the node that serves the `{fleet}` slot:
        one clock for every shard, since a scheduler round compares one `now` with the deadlines of every
        shard, and the deadlines a worker renews in one command per shard were all taken from one `now`
        (a lease's TTL, kept by each node itself, needs no clock of ours)."""
        if self.store.cluster:
            return redis_time(self.redis.time(target_nodes=self.redis.get_node_from_key(self.names.fleet("clock"))))
        return redis_time(self.redis.time())

    def shard_key(self, workflow_id: str, name: str) -> str:
        """A record of the run's shard (`<t>:dispatched`, `<t>:dirty`, ...), in its keys' slot."""
        return self.names.shard_of(workflow_id).key(name)

    def _begin_call(self, workflow_id: str, token: str, limit: int, known_version: int, ttl: float) -> BeginCall:
        k = self.names.run(workflow_id)
        return BeginCall(lease_key=k.lease, run_key=k.run, inbox_key=k.inbox, events_key=k.events, token=token,
                         ttl_ms=int(ttl * 1000), limit=limit,
                         known_version=known_version)

    # --- inbox --------------------------------------------------------------------------------------
    def push(self, workflow_id: str, message: dict[str, Any]) -> None:
        """Queue a message for the run's coordinator; the run is marked dirty until its inbox is empty,
        so a message whose wake-up got lost is still found by the sweeper."""
        k = self.names.run(workflow_id)
        call = QueueCall(inbox_key=k.inbox, dirty_key=k.shard.dirty,
                         message=codec.encode(message), now=self.clock.now(), workflow_id=workflow_id)
        self.store.replicated(lambda client: self._lua.run(call, client=client),
                              f"a {message.get('k')} message to workflow {workflow_id}", call.inbox_key)

    def push_input(self, workflow_id: str, message: dict[str, Any], request_id: str | None = None) -> PushReply:
        """A client's input, queued only while the run is open (see push.lua and PushReply)."""
        call = self._push_call(workflow_id, message, request_id)
        return PushReply(int(self.store.replicated(lambda client: self._lua.run(call, client=client),
                                                   f"a {message.get('k')} message to workflow {workflow_id}",
                                                   call.run_key)))

    def push_inputs(self, inputs: Sequence[tuple[str, dict[str, Any], str]]) -> list[PushReply]:
        """Many clients' inputs `(workflow id, message, request id)`, each as `push_input`, pipelined (one
        round trip for all; one after the other where each write waits for replicas)."""
        if self.store.append_replicas > 0:
            return [self.push_input(*one) for one in inputs]
        calls = [self._push_call(*one) for one in inputs]
        return [PushReply(int(r)) for r in self._lua.run_all(calls)]

    def _push_call(self, workflow_id: str, message: dict[str, Any], request_id: str | None) -> PushCall:
        k = self.names.run(workflow_id)
        return PushCall(
            run_key=k.run, inbox_key=k.inbox, requests_key=k.requests,
            dirty_key=k.shard.dirty, wake_key=k.shard.wake, waking_key=k.shard.waking, message=codec.encode(message),
            request_id=request_id, workflow_id=workflow_id, now=self.clock.now(), ttl_ms=self._waking_ttl_ms)

    def start_run(self, state: WorkflowState, request_id: str | None = None,
                  timeout: tuple[float, dict[str, Any]] | None = None) -> str:
        """Create the run, listed, with its start message queued and its execution timeout `timeout` (due
        time, message) armed, in one atomic step (see start.lua). Returns the run id: the new one, or the
        one this request created before. Raises `WorkflowAlreadyStarted` for another open run."""
        run_id, _ = self._start(state, request_id, timeout, None)
        return run_id

    def signal_with_start(self, state: WorkflowState, signal: dict[str, Any], request_id: str | None = None,
                          timeout: tuple[float, dict[str, Any]] | None = None) -> tuple[str, PushReply | None]:
        """Queue `signal` for the open run of the id, else create the run (as `start_run`) with the signal
        queued after its start message: one atomic step (start.lua), so that callers racing on one id make
        one run holding every signal. Returns the run id and, when the signal went to a run already open,
        push.lua's answer (None: this call created the run)."""
        return self._start(state, request_id, timeout, codec.encode(signal))

    def _start(self, state: WorkflowState, request_id: str | None, timeout: tuple[float, dict[str, Any]] | None,
               signal: bytes | None) -> tuple[str, PushReply | None]:
        k = self.names.run(state.workflow_id)
        run_key = k.run
        call = StartCall(
            run_key=k.run, events_key=k.events, inbox_key=k.inbox, dirty_key=k.shard.dirty,
            timers_key=k.shard.timers, requests_key=k.requests, wake_key=k.shard.wake, waking_key=k.shard.waking,
            run_id=state.run_id, status=state.status.value, summary=codec.encode_state(state),
            workflow_type=state.workflow_type, created=state.created_at, updated=state.updated_at,
            request_id=request_id, workflow_id=state.workflow_id, start_message=codec.encode({"k": "start"}),
            index_prefix=k.shard.index_prefix,
            timeout_due=timeout[0] if timeout else None,
            timeout_member=timer_member(state.workflow_id, timeout[1]) if timeout else None,
            signal_message=signal, now=self.clock.now(), ttl_ms=self._waking_ttl_ms,
            attrs=redis_search.entries(state.search_attributes),
            events=tuple(codec.encode_event(e) for e in state.history))
        unconfirmed: ReplicationError | None = None
        try:
            got = self.store.replicated(lambda client: self._lua.run(call, client=client).decode(),
                                        f"the start of workflow {state.workflow_id}", run_key)
        except ReplicationError as exc:  # on the primary all the same: say so
            got, unconfirmed = exc.result, exc
        if got.startswith(SIGNALLED):
            return got[2:], PushReply(int(got[1]))
        if got.startswith(STARTED_BEFORE):
            return got[len(STARTED_BEFORE):], None
        if not was_created(got):
            raise WorkflowAlreadyStarted(f"workflow {state.workflow_id!r} already has an open run")
        if unconfirmed is not None:
            raise unconfirmed
        return state.run_id, None

    # --- coordinator lease --------------------------------------------------------------------------
    def begin(self, workflow_id: str, limit: int = 100, known_version: int = 0, ttl: float = 10.0) -> Begun | None:
        """Take the run's lease and read its state; None when another coordinator holds the lease."""
        token = uuid.uuid4().hex
        return _begun(token, self._lua.run(self._begin_call(workflow_id, token, limit, known_version, ttl)))

    def begin_many(self, runs: list[tuple[str, int]], limit: int = 100, ttl: float = 10.0) -> list[Begun | None]:
        """`begin` of several runs, (workflow id, the version the caller has cached), in one pipeline (one
        by one on a Redis Cluster); each script takes one run's lease atomically, as `begin` does."""
        batch = uuid.uuid4().hex[:24]  # one random part per batch: each run's token is still its own
        tokens = [f"{batch}{i:08x}" for i in range(len(runs))]
        got = self._lua.run_all([self._begin_call(wid, token, limit, known, ttl)
                                 for (wid, known), token in zip(runs, tokens, strict=True)])
        return [_begun(token, g) for token, g in zip(tokens, got, strict=True)]

    def report_and_begin(self, workflow_id: str, seq: int, attempt: int, message: dict[str, Any],
                         next_attempt: int | None, limit: int = 100, known_version: int = 0,
                         ttl: float = 10.0, heartbeat: bool = False) -> Begun | None:
        """An activity attempt's outcome, in one round trip: retire the attempt and queue its report, and
        either take the lease (the report is queued after the messages already waiting, for the caller
        to record) or leave the report to the coordinator that holds the lease (None)."""
        token = uuid.uuid4().hex
        t = self.names.shard_of(workflow_id)
        got = self._lua.run(ReportCall(
            begin=self._begin_call(workflow_id, token, limit, known_version, ttl),
            running_info_key=t.running_info, dirty_key=t.dirty, dispatched_key=t.dispatched,
            report=codec.encode(message), seq=seq, member=_running_member(workflow_id, seq, attempt),
            next_attempt=next_attempt, now=self.clock.now(), workflow_id=workflow_id,
            next_deadline=self.dispatch_deadline(message.get("retry_in") or 0.0),
            heartbeat="1" if heartbeat else ""))
        return _begun(token, got)

    def report_and_append(self, append_call: AppendCall, seq: int, attempt: int, message: dict[str, Any],
                          next_attempt: int | None, heartbeat: bool = False) -> int:
        """An attempt's outcome and the events it leads to, in one round trip: `append_call` is the
        store's `append_call`, applied only if nobody touched the run (beluga/lua/report_and_append.lua).
        The messages left in the inbox, or REPORT_QUEUED when the report was queued for the coordinator."""
        workflow_id = append_call.workflow_id
        t = self.names.shard_of(workflow_id)
        call = ReportAndAppendCall(
            append=append_call, running_info_key=t.running_info, dirty_key=t.dirty,
            report=codec.encode(message), seq=seq, member=_running_member(append_call.workflow_id, seq, attempt),
            next_attempt=next_attempt, now=self.clock.now(),
            next_deadline=self.dispatch_deadline(message.get("retry_in") or 0.0),
            heartbeat="1" if heartbeat else "")
        return self.store.replicated(lambda client: int(self._lua.run(call, client=client)),
                                     f"attempt {attempt} of workflow {workflow_id} seq {seq}", append_call.run_key)

    def read(self, workflow_id: str, token: str, limit: int = 100) -> Begun:
        """Re-read the run while holding its lease (after losing an append race). No transaction (which a
        Redis out of memory refuses): while the lease is held nobody else appends, and the inbox only grows
        at its tail."""
        k = self.names.run(workflow_id)
        run_key, inbox_key = k.run, k.inbox
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(run_key, "run_id", "version")
        pipe.lrange(inbox_key, 0, limit - 1)
        (run_id, version), items = pipe.execute()
        return Begun(token, run_id.decode() if run_id else None, int(version or 0), items, len(items), [])

    def release(self, workflow_id: str, token: str) -> int:
        """Give the lease back; returns how many inbox messages arrived meanwhile."""
        return int(self._lua.run(self._release_call(workflow_id, token)))

    def release_many(self, leases: list[tuple[str, str]]) -> list[int]:
        """`release` of several (workflow id, token) leases in one pipeline."""
        return [int(n) for n in self._lua.run_all([self._release_call(wid, token) for wid, token in leases])]

    def _release_call(self, workflow_id: str, token: str) -> ReleaseCall:
        k = self.names.run(workflow_id)
        return ReleaseCall(lease_key=k.lease, inbox_key=k.inbox, token=token)

    # --- activity attempts --------------------------------------------------------------------------
    # An attempt in flight has one record: its deadline in its shard's <t>:dispatched, first set by the append that
    # dispatches it. The worker that holds its message (waiting for a pool process, scheduled for a
    # retry, or running) renews it in bulk from its main process (`hold`); a process running an attempt
    # eagerly, without a message, renews it itself; an attempt that promised heartbeats has its deadline
    # moved by each heartbeat instead. Its report drops it. A deadline that passes means the attempt is
    # lost (`lapsed`), whatever stage it was lost in.
    def claim(self, workflow_id: str, seq: int, attempt: int, run_id: str, ttl: float | None = None
              ) -> tuple[bool, Any]:
        """Start an attempt if it is still the allowed one and no worker took it before (see claim.lua; every
        delivery claims, a first one too): (False, None) for a stale delivery or a duplicate, else
        (True, the last heartbeat details of an earlier attempt). `ttl` is its heartbeat timeout, when
        it promised heartbeats: its deadline then moves with each heartbeat, not with its holder."""
        k = self.names.run(workflow_id)
        got = self._lua.run(ClaimCall(
            dispatched_key=k.shard.dispatched, running_info_key=k.shard.running_info, beats_key=k.beats,
            waiting_key=k.shard.waiting, run_key=k.run, seq=seq, member=_running_member(workflow_id, seq, attempt),
            expiry=self.clock.now() + (ttl or self.lease_seconds),
            info=codec.encode({"run": run_id, "heartbeat_timeout": ttl}) if ttl else None, run_id=run_id))
        if not got:
            return False, None
        return True, (codec.decode(got[1]) if len(got) > 1 and got[1] else None)

    def heartbeat(self, workflow_id: str, seq: int, attempt: int, ttl: float | None, details: Any) -> None:
        """An attempt's heartbeat: its details are kept for the next attempt and, when it promised
        heartbeats every `ttl` seconds, its deadline moves that far ahead (unless it was reclaimed
        meanwhile)."""
        pipe = self.redis.pipeline(transaction=False)
        if ttl:
            pipe.zadd(self.names.shard_of(workflow_id).dispatched,
                      {_running_member(workflow_id, seq, attempt): self.clock.now() + ttl}, xx=True)
        pipe.hset(self.names.run(workflow_id).beats, str(seq), codec.encode(details))
        pipe.execute()

    def still_current(self, attempts: list[tuple[str, str, int, int]]) -> list[bool]:
        """Whether each running attempt (workflow id, run id, seq, attempt) may still count: it keeps its
        deadline (not reported, not reclaimed) and its run is that run, open. One pipeline of plain reads;
        an async attempt's coroutine is cancelled once its answer is no (see celery/async_attempts.py)."""
        if not attempts:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for workflow_id, _, seq, attempt in attempts:
            k = self.names.run(workflow_id)
            pipe.zscore(k.shard.dispatched, _running_member(workflow_id, seq, attempt))
            pipe.hmget(k.run, "run_id", "status")
        replies = pipe.execute()
        out = []
        for i, (_, run_id, _, _) in enumerate(attempts):
            deadline, (current_run, status) = replies[2 * i], replies[2 * i + 1]
            out.append(deadline is not None and _text(current_run) == run_id and _text(status) == "running")
        return out

    def hold(self, held: list[tuple[str, int, int]], until: float | None = None) -> None:
        """Renew the deadlines of attempts this worker still holds or runs, `lease_seconds` from now (or
        to `until`), one command per shard in one pipeline: a deadline nobody renews lapses, and its
        attempt is dispatched again. Attempts reported or reclaimed meanwhile are left out (XX)."""
        if held:
            until = self.clock.now() + self.lease_seconds if until is None else until
            pipe = self.redis.pipeline(transaction=False)
            for shard, mine in _by_shard(held).items():
                pipe.zadd(self.names.shard(shard).dispatched, {_running_member(*m): until for m in mine}, xx=True)
            pipe.execute()

    # --- what the workers can run -------------------------------------------------------------------
    def publish_names(self, workflows: list[str], activities: list[str]) -> None:
        """Workers announce the workflow and activity names they have code for, so that a client
        without the code can refuse a misspelt name at the call instead of starting a run that waits."""
        pipe = self.redis.pipeline(transaction=False)
        if workflows:
            pipe.sadd(self.names.fleet("names:workflows"), *workflows)
        if activities:
            pipe.sadd(self.names.fleet("names:activities"), *activities)
        pipe.execute()

    def announce_worker(self, worker: str, record: bytes, ttl: float) -> None:
        """This worker is alive and has `record` (see `roster`) for the next `ttl` seconds: Redis expires
        it, so no process's clock is involved."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.names.fleet(f"worker:{worker}"), record, px=max(1, int(ttl * 1000)))
        pipe.sadd(self.names.fleet("workers"), worker)
        pipe.execute()

    def withdraw_worker(self, worker: str) -> None:
        """A worker that stops cleanly is no longer live at once."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.names.fleet(f"worker:{worker}"))
        pipe.srem(self.names.fleet("workers"), worker)
        pipe.execute()

    def live_workers(self) -> list[tuple[str, bytes]]:
        """(node name, record) of every worker whose announcement has not expired; the names of those
        that expired are dropped from the set (a live one adds itself again at its next renewal)."""
        names = sorted(n.decode() for n in self.redis.smembers(self.names.fleet("workers")))
        if not names:
            return []
        got = self.redis.mget([self.names.fleet(f"worker:{name}") for name in names])
        gone = [name for name, record in zip(names, got, strict=True) if record is None]
        if gone:
            self.redis.srem(self.names.fleet("workers"), *gone)
        return [(name, record) for name, record in zip(names, got, strict=True) if record is not None]

    def known_workflows(self) -> set[str]:
        return {n.decode() for n in self.redis.smembers(self.names.fleet("names:workflows"))}

    def known_activities(self) -> set[str]:
        """Activity names some worker announced; cached for a few seconds (asked on every dispatch)."""
        now = time.monotonic()
        if now - self._known_at > 5.0:
            self._known = {n.decode() for n in self.redis.smembers(self.names.fleet("names:activities"))}
            self._known_at = now
        return self._known

    def backup_delay(self) -> float:
        """How long after a step the backups it arms (a child's creation, a parent's news) fire: after
        the direct way has long succeeded, unless the process doing it died."""
        return 2 * self.lease_seconds

    def dispatch_deadline(self, delay: float = 0.0) -> float:
        """When the scheduler first looks at an attempt sent now (to start after `delay`) that no worker
        has taken: a lease (then it is sent again, or waits on, see `requeue`; a worker that took it
        renews it, see `holds.Holds`), or never where the broker redelivers by itself (an AMQP broker;
        a schedule-to-start deadline still applies, see `note_sent`)."""
        if not self.undelivered_lapse:
            return self.clock.now() + delay + 10 * 365 * 86400.0
        return self.clock.now() + delay + self.lease_seconds

    def lease_deadline(self) -> float:
        """The deadline of an attempt that starts now in a process that renews it (an eager attempt)."""
        return self.clock.now() + self.lease_seconds

    def _each_shard(self, command: str, name: str, *args: Any, **kwargs: Any) -> list[tuple[str, Any]]:
        """One command on the record `name` of every shard, in one pipeline: [(key, reply), ...]."""
        keys = [self.names.shard(shard).key(name) for shard in range(SHARDS)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(key, *args, **kwargs)
        return list(zip(keys, pipe.execute(), strict=True))

    def lapsed(self, now: float, limit: int = 100) -> list[Lost]:
        """Attempts whose deadline passed, in every shard (at most `limit` per shard): their worker stopped
        renewing them (it died, or lost the message), or no heartbeat came in time, or (those with a
        `waiting` record) no worker has taken them: their message waits in a queue that no live worker
        consumes or behind a backlog, or was lost (see `requeue`). Nothing here reads a broker queue."""
        found = [(key, members) for key, members in
                 self._each_shard("zrangebyscore", "dispatched", "-inf", now, start=0, num=limit) if members]
        if not found:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key, members in found:
            tag = key.removesuffix(":dispatched")
            pipe.hmget(tag + ":running:info", members)
            pipe.hmget(tag + ":waiting", members)
        got = pipe.execute()
        out = []
        for i, (_, members) in enumerate(found):
            for member, info, waiting in zip(members, got[2 * i], got[2 * i + 1], strict=True):
                wid, seq, attempt = member.decode().rsplit("\x00", 2)
                out.append(Lost(wid, int(seq), int(attempt), codec.decode(info) if info else {}, now,
                                Waiting.decode(waiting) if waiting else None))
        return out

    # --- attempts no worker has taken ----------------------------------------------------------------
    def note_sent(self, waiting: Waiting) -> None:
        """Mark an attempt whose message is about to be published as waiting for a worker (the claim
        that starts it drops the mark); its deadline comes forward to its schedule-to-start deadline."""
        workflow_id, _, seq, attempt = waiting.args[:4]
        member = _running_member(workflow_id, seq, attempt)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.names.shard_of(workflow_id).waiting, member, waiting.encode())
        if waiting.to_start_by is not None:
            pipe.zadd(self.names.shard_of(workflow_id).dispatched, {member: waiting.to_start_by}, xx=True, lt=True)
        pipe.execute()

    def requeue(self, lost: Lost, now: float, resend: bool) -> Waiting | None:
        """An untaken attempt past its deadline (`lost.waiting`): give it its next deadline, `resend_delay`
        after this look (never past its schedule-to-start deadline), for this caller alone. Returns its new
        record when the caller is to act (publish its message again when `resend`), None when a worker or
        another scheduler came first, or its run closed or moved on (then the attempt is retired)."""
        assert lost.waiting is not None
        waiting = lost.waiting.looked(resend)
        deadline = now + resend_delay(self.lease_seconds, waiting.looks - 1)
        if waiting.to_start_by is not None:
            deadline = min(deadline, waiting.to_start_by)
        got = self._lua.run(RequeueCall(
            dispatched_key=self.names.shard_of(lost.workflow_id).dispatched,
            waiting_key=self.names.shard_of(lost.workflow_id).waiting, run_key=self.names.run(lost.workflow_id).run,
            member=_running_member(lost.workflow_id, lost.seq, lost.attempt), deadline=lost.deadline,
            new_deadline=deadline, record=waiting.encode(), run_id=waiting.args[1]))
        return waiting if int(got) == RequeueReply.REQUEUED else None

    def waiting_attempts(self, workflow_id: str, attempts: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """Of these (seq, attempt) of the run, those that no worker has taken yet -> the queue they wait in."""
        attempts = list(attempts)
        if not attempts:
            return {}
        got = self.redis.hmget(self.names.shard_of(workflow_id).waiting,
                               [_running_member(workflow_id, seq, attempt) for seq, attempt in attempts])
        return {a: Waiting.decode(w).queue for a, w in zip(attempts, got, strict=True) if w}

    def identity(self, refresh: bool = False) -> str:
        """This fleet's id, stamped on every message it sends (see foreign.py): made by the first process
        that asks and kept in the history Redis under the key prefix, so two deployments that share a
        broker but not their history Redis or key prefix tell their messages apart. Read once per process,
        again when `refresh` (a message with another id came: this process's may be the stale one) and
        every IDENTITY_TTL seconds (a store wiped while this process lived has a new one)."""
        now = time.monotonic()
        if self._identity is None or refresh or now - self._identity_at > IDENTITY_TTL:
            key = self.names.fleet("id")
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(key, uuid.uuid4().hex[:16], nx=True)
            pipe.get(key)
            self._identity, self._identity_at = pipe.execute()[1].decode(), now
        return self._identity

    def knows(self, task: str, args: tuple[Any, ...]) -> bool:
        """Whether this fleet's store holds what a message of `task` with `args` is about (one read): the
        run of a coordinate or query task, the shard's waiting runs or waking lease of a wake task, the
        attempt of an activity task. Tells a message of this fleet whose sender's id is stale (its store
        was wiped and made a new id) from one of another fleet."""
        try:
            if task == "beluga.wake":
                shard = self.names.shard(int(args[0]))
                return bool(self.redis.exists(shard.wake, shard.waking))
            if task in ("beluga.coordinate", "beluga.query"):
                return bool(self.redis.exists(self.names.run(str(args[0])).run))
            if task == "beluga.activity":
                workflow_id, _, seq, attempt = args[:4]
                member = _running_member(str(workflow_id), int(seq), int(attempt))
                return self.redis.zscore(self.names.shard_of(str(workflow_id)).dispatched, member) is not None
        except (IndexError, TypeError, ValueError):
            return False
        return False

    def announce_queues(self, queues: Iterable[str], ttl: float) -> None:
        """A live worker consumes these queues, for `ttl` seconds unless it says so again."""
        until = self.clock.now() + ttl
        mapping = {q: until for q in queues}
        if mapping:
            self.redis.zadd(self.names.fleet("queues"), mapping, gt=True)

    def live_queues(self, now: float | None = None) -> set[str]:
        """The queues some live worker consumes (it announced them within their time to live)."""
        now = self.clock.now() if now is None else now
        return {q.decode() for q in self.redis.zrangebyscore(self.names.fleet("queues"), now, "+inf")}

    def reclaim(self, lost: Lost, failure: dict[str, Any]) -> bool:
        """Claim a lost attempt (exactly one caller gets it) and, in the same atomic step, queue its
        failure for the coordinator, which decides on a new attempt under the retry policy, and retire it
        (see reclaim.lua). False when someone, or the attempt itself, came first."""
        run_id = lost.info.get("run") or (lost.waiting.args[1] if lost.waiting is not None else None)
        message = messages.encode(ActivityOutcome(lost.seq, lost.attempt, False, failure), run_id)
        call = ReclaimCall(
            dispatched_key=self.names.shard_of(lost.workflow_id).dispatched,
            running_info_key=self.names.shard_of(lost.workflow_id).running_info,
            inbox_key=self.names.run(lost.workflow_id).inbox, dirty_key=self.names.shard_of(lost.workflow_id).dirty,
            waiting_key=self.names.shard_of(lost.workflow_id).waiting,
            member=_running_member(lost.workflow_id, lost.seq, lost.attempt), deadline=lost.deadline,
            report=codec.encode(message), now=self.clock.now(), workflow_id=lost.workflow_id)
        # claimed: a lagging replica must not make this caller drop it (see on_primary)
        return bool(on_primary(self.store.replicated, lambda client: self._lua.run(call, client=client),
                               f"a lost attempt of workflow {lost.workflow_id}", call.inbox_key))

    # --- timers -------------------------------------------------------------------------------------
    def arm(self, workflow_id: str, due: float, message: dict[str, Any]) -> None:
        self.redis.zadd(self.names.shard_of(workflow_id).timers, {timer_member(workflow_id, message): due})

    def drain_timers(self, now: float, limit: int = 500) -> tuple[int, list[int]]:
        """Move the timer messages due by `now` into their runs' inboxes (at most `limit` per shard) and
        add those runs to their shards' wake sets: how many, and the shards whose wake task the caller
        must send. The shards with a timer due are found first, with one plain read each (the scheduler
        asks five times a second, and most of the time no timer is due)."""
        due = [shard for shard, (_, first) in enumerate(
            self._each_shard("zrangebyscore", "timers", "-inf", now, start=0, num=1)) if first]
        got = self._lua.run_all([DrainTimersCall(
            timers_key=self.names.shard(shard).timers, wake_key=self.names.shard(shard).wake,
            waking_key=self.names.shard(shard).waking, dirty_key=self.names.shard(shard).dirty, now=now,
            limit=limit, tag=self.store.shard_tag(shard), ttl_ms=self._waking_ttl_ms) for shard in due])
        return sum(int(n) for n, _ in got), [shard for shard, (_, send) in zip(due, got, strict=True) if send]

    def sweep(self, now: float, grace: float = 2.0, limit: int = 500) -> tuple[int, list[int]]:
        """Runs with messages waiting longer than `grace` and no coordinator, added to their shards' wake
        sets: how many, and the shards whose wake task the caller must send (also those whose task was
        lost)."""
        got = self._lua.run_all([SweepCall(
            dirty_key=self.names.shard(shard).dirty, wake_key=self.names.shard(shard).wake,
            waking_key=self.names.shard(shard).waking, cutoff=now - grace, now=now,
            tag=self.store.shard_tag(shard), limit=limit, ttl_ms=self._waking_ttl_ms) for shard in range(SHARDS)])
        return sum(int(n) for n, _ in got), [shard for shard, (_, send) in enumerate(got) if send]

    def forget_dirty(self, workflow_id: str) -> None:
        """The sweep stops waking the run (held stuck, see `Coordinator._unreadable`): its inbox keeps its
        messages, and a new one marks it dirty again."""
        self.redis.zrem(self.names.shard_of(workflow_id).dirty, workflow_id)

    # --- wake-ups -----------------------------------------------------------------------------------
    def wake(self, workflow_ids: Iterable[str]) -> list[int]:
        """These runs need a coordinator: added to their shards' wake sets. Returns the shards whose wake
        task the caller must send (none is queued or running yet)."""
        groups = _by_shard((wid,) for wid in workflow_ids)
        calls = [WakeCall(wake_key=self.names.shard(shard).wake, waking_key=self.names.shard(shard).waking,
                          ttl_ms=self._waking_ttl_ms, workflow_ids=tuple(w for (w,) in wids))
                 for shard, wids in groups.items()]
        got = self._lua.run_all(calls) if len(calls) > 1 else [self._lua.run(c) for c in calls]
        return [shard for shard, send in zip(groups, got, strict=True) if send]

    def take_wakes(self, shard: int, limit: int = 100, keep: bool = False) -> list[str]:
        """The next runs the shard's wake task coordinates; none once its wake set is empty, and then the
        task is done (a run woken after that sends a new one) unless `keep`: then the task keeps the
        shard's waking lease and must look again."""
        got = self._lua.run(TakeWakesCall(wake_key=self.names.shard(shard).wake,
                                          waking_key=self.names.shard(shard).waking, limit=limit,
                                          ttl_ms=self._waking_ttl_ms, keep="1" if keep else ""))
        return [w.decode() for w in got]

    # --- closing -------------------------------------------------------------------------------------
    def closed_channel(self, workflow_id: str) -> str:
        return self.names.closed_channel(workflow_id)

    def announce_closed(self, workflow_id: str, status: str) -> None:
        """Wake the clients waiting on `handle.result()` at once, instead of at their next poll."""
        self.redis.publish(self.closed_channel(workflow_id), status)

    def announce_closed_many(self, closed: list[tuple[str, str]]) -> None:
        """`announce_closed` of several (workflow id, status), in one pipeline."""
        if len(closed) == 1:
            self.announce_closed(*closed[0])
        elif closed:
            pipe = self.redis.pipeline(transaction=False)
            for workflow_id, status in closed:
                pipe.publish(self.closed_channel(workflow_id), status)
            pipe.execute()

    def update_reply_key(self, workflow_id: str, update_id: str) -> str:
        """Where the coordinator that records an update's end pushes its outcome for the waiting caller."""
        return self.names.reply_channel(f"update:{workflow_id}:{update_id}")

    # --- query replies ------------------------------------------------------------------------------
    def reply(self, key: str, value: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, codec.encode(value))
        pipe.expire(key, 60)
        pipe.execute()

    def wait_reply(self, key: str, timeout: float, slice: float = 1.0) -> dict[str, Any] | None:
        """The reply pushed to `key` within `timeout` seconds, else None. Waits in BLPOPs of at most
        `slice` seconds (each must end within the client's socket timeout) and through errors (a Redis
        restarted, frozen), so that it ends in about `timeout` whatever Redis does."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                got = self.redis.blpop([key], timeout=max(0.01, round(min(slice, remaining), 2)))
            except TRANSIENT:
                pause(min(0.2, max(0.0, deadline - time.monotonic())))
                continue
            if got is not None:
                return codec.decode(got[1])


RESEND_MAX = 300.0  # seconds between two looks at an untaken attempt, at most


def resend_delay(lease_seconds: float, looks: int) -> float:
    """How long after its `looks`-th look (0: the first) an attempt that no worker has taken is looked at
    again (and its message sent again, if its queue has a live consumer): a lease, doubling each time, up
    to RESEND_MAX. A message lost by the broker is sent again a lease after its dispatch; one waiting
    behind a long backlog gets a handful of duplicates, which the claim skips."""
    return min(RESEND_MAX, max(lease_seconds, 0.1) * 2.0 ** min(looks, 30))


@dataclass(frozen=True, slots=True)
class Waiting:
    """An attempt sent through the broker that no worker has taken yet: its message's arguments (to send
    it again), its queue, when it must have started (`schedule_to_start_timeout`) and how often the
    scheduler looked at it past its deadline, and sent it again."""

    args: tuple[Any, ...]      # the activity task's (workflow id, run id, seq, attempt, name, input, options)
    queue: str
    sent_at: float
    to_start_by: float | None = None
    looks: int = 0
    resent: int = 0

    def looked(self, resend: bool) -> Waiting:
        return replace(self, looks=self.looks + 1, resent=self.resent + (1 if resend else 0))

    def encode(self) -> bytes:
        return codec.encode({"args": list(self.args), "q": self.queue, "at": self.sent_at, "by": self.to_start_by,
                             "looks": self.looks, "resent": self.resent})

    @staticmethod
    def decode(raw: bytes) -> Waiting:
        d = codec.decode(raw)
        return Waiting(tuple(d["args"]), d["q"], d["at"], d.get("by"), d.get("looks", 0), d.get("resent", 0))


@dataclass(frozen=True, slots=True)
class Lost:
    """An activity attempt whose deadline had passed `deadline`: lost (see `Fleet.reclaim`), or, with a
    `waiting` record, not taken by any worker yet (see `Fleet.requeue`)."""

    workflow_id: str
    seq: int
    attempt: int
    info: dict[str, Any]
    deadline: float
    waiting: Waiting | None = None


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


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
