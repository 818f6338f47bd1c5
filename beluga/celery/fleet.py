"""The fleet's shared Redis state beside the histories: run inboxes, coordinator leases, the timer set,
activity attempts and leases. One place owns every key name.

- inbox `<p>:{id}:inbox`: messages for the coordinator (signal, cancel, activity result, timer, ...)
- lease `<p>:{id}:lease`: the one coordinator allowed to append to the run
- attempts `<p>:{id}:attempts`: seq -> the attempt that may run now (stale deliveries are dropped)
- `<p>:timers`: due time -> message, drained into inboxes by the scheduler
- `<p>:running`: activity attempts in flight -> lease expiry, renewed while the worker lives
- `<p>:dispatched`: attempts sent but not yet taken by a worker -> when they count as lost
- `<p>:received`: attempts a worker took but has not started (or, for first attempts, is running
  unclaimed) -> {run, worker}; `<p>:received:until` -> when the receipt lapses unless the worker
  still holding the message renews it
- `<p>:wake`: runs whose inbox got messages from the scheduler and still need a coordinator
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from beluga import codec
from beluga.stores.redis import APPEND_BODY, APPEND_CHECK, RedisStore

# KEYS: timers, wake, dirty. ARGV: now, limit, prefix. Moves due timer messages into their runs' inboxes.
_DRAIN_TIMERS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, '\\0', 1, true)
  local wid = string.sub(member, 1, sep - 1)
  redis.call('RPUSH', ARGV[3] .. ':{' .. wid .. '}:inbox', string.sub(member, sep + 1))
  redis.call('SADD', KEYS[2], wid)
  redis.call('ZADD', KEYS[3], ARGV[1], wid)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

# KEYS: dirty. ARGV: cutoff, now, prefix, limit. Runs whose inbox has waited since before `cutoff` with
# no coordinator holding their lease (a worker died mid-coordination, or a wake message was lost);
# runs whose inbox is empty are forgotten.
_SWEEP = """
local out = {}
for _, wid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))) do
  local tag = ARGV[3] .. ':{' .. wid .. '}'
  if redis.call('LLEN', tag .. ':inbox') == 0 then
    redis.call('ZREM', KEYS[1], wid)
  else
    redis.call('ZADD', KEYS[1], ARGV[2], wid)
    if redis.call('EXISTS', tag .. ':lease') == 0 then out[#out + 1] = wid end
  end
end
return out
"""

# The common tail of _BEGIN and _REPORT. KEYS: lease, run, inbox, events. ARGV: token, ttl ms, inbox
# limit, cached version. Takes the lease and reads, in one round trip, the run's id and version, its
# waiting messages and the events past the cached version: {} when another holds the lease, else
# {run_id, version, n, msgs..., events...}.
_TAKE_LEASE_AND_READ = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {} end
local cur = redis.call('HMGET', KEYS[2], 'run_id', 'version')
local msgs = redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)
local out = {cur[1] or '', cur[2] or '0', #msgs}
for _, m in ipairs(msgs) do out[#out + 1] = m end
local known, version = tonumber(ARGV[4]), tonumber(cur[2] or '0')
if known > 0 and version > known and version - known <= 1000 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[4], '0-' .. (known + 1), '+')) do
    out[#out + 1] = entry[2][2]
  end
end
return out
"""
_BEGIN = _TAKE_LEASE_AND_READ

# KEYS: lease, run, inbox, events, attempts, running, running info, dirty, dispatched, received. ARGV: token, ttl
# ms, inbox limit, cached version, the attempt's report message, seq, running member, next attempt (''
# retires the seq), now, workflow id, the next attempt's dispatch deadline, the attempt. Retires the
# finished attempt (if it is still the allowed one: a stale report must not retire its successor) and
# queues its report; then, if the lease is free, takes it and answers like _BEGIN, else answers {}
# (the lease holder sees the report as it lets go).
_REPORT = """
if redis.call('HGET', KEYS[5], ARGV[6]) == ARGV[12] then
  if ARGV[8] ~= '' then
    redis.call('HSET', KEYS[5], ARGV[6], ARGV[8])
    redis.call('ZADD', KEYS[9], ARGV[11], ARGV[10] .. '\0' .. ARGV[6] .. '\0' .. ARGV[8])
  else
    redis.call('HDEL', KEYS[5], ARGV[6])
  end
end
redis.call('ZREM', KEYS[6], ARGV[7])
redis.call('HDEL', KEYS[7], ARGV[7])
redis.call('ZREM', KEYS[9], ARGV[7])
redis.call('HDEL', KEYS[10], ARGV[7])
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[8], ARGV[9], ARGV[10])
""" + _TAKE_LEASE_AND_READ

# The fast path of an attempt's report, one round trip for the common case of a worker that has the run
# cached at its current version: the store's append (KEYS and ARGV as in APPEND_BODY, KEYS[6] the
# fleet-wide `dispatched`), plus KEYS running, running info, dirty, received, and after the append's
# arguments: the report message, seq, running member, next attempt ('' retires the seq), now, the next
# attempt's dispatch deadline, the attempt. Retires the finished attempt (if still the allowed one); then
# appends only if the run is still at the writer's version, no coordinator holds its lease and its inbox
# is empty; else queues the report for the coordinator (-1), exactly as _REPORT does.
_REPORT_AND_APPEND = APPEND_CHECK + """
local x = APPEND_END
if redis.call('HGET', KEYS[4], ARGV[x + 2]) == ARGV[x + 7] then
  if ARGV[x + 4] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[x + 2], ARGV[x + 4])
    redis.call('ZADD', KEYS[6], ARGV[x + 6], ARGV[11] .. '\0' .. ARGV[x + 2] .. '\0' .. ARGV[x + 4])
  else
    redis.call('HDEL', KEYS[4], ARGV[x + 2])
  end
end
redis.call('ZREM', KEYS[7], ARGV[x + 3])
redis.call('HDEL', KEYS[8], ARGV[x + 3])
redis.call('ZREM', KEYS[6], ARGV[x + 3])
redis.call('HDEL', KEYS[10], ARGV[x + 3])
if not APPEND_VERSION_OK or redis.call('EXISTS', KEYS[5]) == 1 or redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('RPUSH', KEYS[3], ARGV[x + 1])
  redis.call('ZADD', KEYS[9], ARGV[x + 5], ARGV[11])
  return -1
end
""" + APPEND_BODY

# KEYS: attempts, running, running info, beats, received, dispatched. ARGV: seq, attempt, member, expiry, info.
# Starts an attempt if it is still the one allowed: {} when stale, else {heartbeat details or false}.
_CLAIM = """
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {} end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
return {1, redis.call('HGET', KEYS[4], ARGV[1])}
"""

# KEYS: received, dispatched. ARGV: member, info. Notes a receipt unless the attempt already started
# (a receipt is written late, in batches; `claim` removes the attempt from `dispatched` when it starts).
_RECEIVE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""

# KEYS: the attempt's tracking key (running, received or dispatched), running info, inbox, attempts,
# dirty. ARGV: member, 'z' (a sorted set) or 'h' (a hash), the lost attempt's failure report, seq,
# attempt, now, workflow id. Claims a lost attempt for this caller alone and, in the same step, queues its
# failure for the coordinator and retires it (unless a later attempt was allowed meanwhile): an outage
# between the claim and the report cannot lose the attempt. 1 when claimed, 0 when another caller, or
# the attempt itself (started or reported), came first.
_RECLAIM = """
local gone
if ARGV[2] == 'z' then gone = redis.call('ZREM', KEYS[1], ARGV[1])
else gone = redis.call('HDEL', KEYS[1], ARGV[1]) end
if gone == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[7])
if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[5] then redis.call('HDEL', KEYS[4], ARGV[4]) end
return 1
"""

# KEYS: lease, inbox. Releases the lease if still ours; returns how many messages wait in the inbox.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('LLEN', KEYS[2])
"""


class Fleet:
    def __init__(self, store: RedisStore, lease_seconds: float = 15.0) -> None:
        self.store = store
        self.redis = store.redis
        self.prefix = store.prefix
        self.lease_seconds = lease_seconds
        self._drain = self.redis.register_script(_DRAIN_TIMERS)
        self._known: set[str] = set()
        self._known_at = -1e9
        self._release = self.redis.register_script(_RELEASE)
        self._begin = self.redis.register_script(_BEGIN)
        self._claim = self.redis.register_script(_CLAIM)
        self._report = self.redis.register_script(_REPORT)
        self._report_and_append = self.redis.register_script(_REPORT_AND_APPEND)
        self._sweep = self.redis.register_script(_SWEEP)
        self._receive = self.redis.register_script(_RECEIVE)
        self._reclaim = self.redis.register_script(_RECLAIM)

    # --- inbox --------------------------------------------------------------------------------------
    def push(self, workflow_id: str, message: dict[str, Any]) -> None:
        """Queue a message for the run's coordinator; the run is marked dirty until its inbox is empty,
        so a message whose wake-up got lost is still found by the sweeper."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(self.store.keys(workflow_id)[2], codec.encode(message))
        pipe.zadd(f"{self.prefix}:dirty", {workflow_id: time.time()})
        pipe.execute()

    # --- coordinator lease --------------------------------------------------------------------------
    def begin(self, workflow_id: str, limit: int = 100, known_version: int = 0, ttl: float = 10.0) -> Begun | None:
        """Take the run's lease and read its state; None when another coordinator holds the lease."""
        token = uuid.uuid4().hex
        run_key, events_key, inbox_key = self.store.keys(workflow_id)
        got = self._begin(keys=[self.store.key(workflow_id, "lease"), run_key, inbox_key, events_key],
                          args=[token, int(ttl * 1000), limit, known_version])
        return _begun(token, got)

    def report_and_begin(self, workflow_id: str, seq: int, attempt: int, message: dict[str, Any],
                         next_attempt: int | None, limit: int = 100, known_version: int = 0,
                         ttl: float = 10.0) -> Begun | None:
        """An activity attempt's outcome, in one round trip: retire the attempt, and either take the
        lease (the report is then the first message, for the caller to record) or queue the report
        for the coordinator that holds the lease (None)."""
        token = uuid.uuid4().hex
        run_key, events_key, inbox_key = self.store.keys(workflow_id)
        member = _running_member(workflow_id, seq, attempt)
        got = self._report(
            keys=[self.store.key(workflow_id, "lease"), run_key, inbox_key, events_key,
                  self.store.key(workflow_id, "attempts"), f"{self.prefix}:running", f"{self.prefix}:running:info",
                  f"{self.prefix}:dirty", f"{self.prefix}:dispatched", f"{self.prefix}:received"],
            args=[token, int(ttl * 1000), limit, known_version, codec.encode(message), str(seq), member,
                  "" if next_attempt is None else str(next_attempt), repr(time.time()), workflow_id,
                  repr(self.dispatch_deadline(message.get("retry_in") or 0.0)), str(attempt)])
        return _begun(token, got)

    def report_and_append(self, append_call: tuple[Any, list[str], list[Any]], seq: int, attempt: int,
                          message: dict[str, Any], next_attempt: int | None) -> int:
        """An attempt's outcome and the events it leads to, in one round trip (see _REPORT_AND_APPEND):
        the messages left in the inbox, or -1 when the report was queued for the coordinator instead."""
        _, keys, args = append_call
        workflow_id = args[10]
        member = _running_member(workflow_id, seq, attempt)
        keys = [*keys[:5], f"{self.prefix}:dispatched", f"{self.prefix}:running", f"{self.prefix}:running:info",
                f"{self.prefix}:dirty", f"{self.prefix}:received"]
        return int(self._report_and_append(keys=keys, args=[
            *args, codec.encode(message), str(seq), member, "" if next_attempt is None else str(next_attempt),
            repr(time.time()), repr(self.dispatch_deadline(message.get("retry_in") or 0.0)), str(attempt)]))

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
        return int(self._release(keys=[self.store.key(workflow_id, "lease"), self.store.keys(workflow_id)[2]],
                                 args=[token]))

    # --- activity attempts --------------------------------------------------------------------------
    def claim(self, workflow_id: str, seq: int, attempt: int, run_id: str, ttl: float | None = None
              ) -> tuple[bool, Any]:
        """Start an attempt if it is still the allowed one: (False, None) for a stale delivery, else
        (True, the last heartbeat details of an earlier attempt)."""
        member = _running_member(workflow_id, seq, attempt)
        got = self._claim(keys=[self.store.key(workflow_id, "attempts"), f"{self.prefix}:running",
                                f"{self.prefix}:running:info", self.store.key(workflow_id, "beats"),
                                f"{self.prefix}:received", f"{self.prefix}:dispatched"],
                          args=[str(seq), str(attempt), member, repr(time.time() + (ttl or self.lease_seconds)),
                                codec.encode({"run": run_id, "heartbeat_timeout": ttl})])
        if not got:
            return False, None
        return True, (codec.decode(got[1]) if len(got) > 1 and got[1] else None)

    def hold_lease(self, workflow_id: str, seq: int, attempt: int, run_id: str, ttl: float | None = None,
                   details: Any = None, beat: bool = False) -> None:
        """Claim (or renew) the attempt's lease for `ttl` seconds; a heartbeat also keeps its details
        for the next attempt."""
        member = _running_member(workflow_id, seq, attempt)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(f"{self.prefix}:running", {member: time.time() + (ttl or self.lease_seconds)})
        pipe.hset(f"{self.prefix}:running:info", member, codec.encode({"run": run_id, "heartbeat_timeout": ttl}))
        if beat:
            pipe.hset(self.store.key(workflow_id, "beats"), str(seq), codec.encode(details))
        pipe.execute()


    def renew(self, members: list[tuple[str, int, int]]) -> None:
        if members:
            expiry = time.time() + self.lease_seconds
            self.redis.zadd(f"{self.prefix}:running",
                            {_running_member(*m): expiry for m in members}, xx=True)

    # --- what the workers can run -------------------------------------------------------------------
    def publish_names(self, workflows: list[str], activities: list[str]) -> None:
        """Workers announce the workflow and activity names they have code for, so that a client
        without the code can refuse a misspelt name at the call instead of starting a run that waits."""
        pipe = self.redis.pipeline(transaction=False)
        if workflows:
            pipe.sadd(f"{self.prefix}:names:workflows", *workflows)
        if activities:
            pipe.sadd(f"{self.prefix}:names:activities", *activities)
        pipe.execute()

    def known_workflows(self) -> set[str]:
        return {n.decode() for n in self.redis.smembers(f"{self.prefix}:names:workflows")}

    def known_activities(self) -> set[str]:
        """Activity names some worker announced; cached for a few seconds (asked on every dispatch)."""
        now = time.monotonic()
        if now - self._known_at > 5.0:
            self._known = {n.decode() for n in self.redis.smembers(f"{self.prefix}:names:activities")}
            self._known_at = now
        return self._known

    # --- worker liveness ----------------------------------------------------------------------------
    def alive(self, worker: str) -> None:
        """A worker's heartbeat; its key expires `lease_seconds` after the worker dies."""
        self.redis.set(f"{self.prefix}:worker:{worker}", 1, px=int(self.lease_seconds * 1000))

    def received(self, receipts: list[tuple[str, int, int, str, str]]) -> None:
        """Workers took these attempts' messages (workflow id, seq, attempt, run id, worker) off the
        queue but have not started them yet. If a worker dies now, or loses the message while it lives
        (a broker connection lost drops what the worker had prefetched), the message waits
        unacknowledged for the broker's visibility timeout (an hour with Redis); these records let the
        scheduler see the loss within `lease_seconds` instead: each lapses unless renewed by a worker
        that still holds the message (`hold_receipts`). An attempt that started meanwhile is left alone."""
        pipe = self.redis.pipeline(transaction=True)
        until = time.time() + self.lease_seconds
        for workflow_id, seq, attempt, run_id, worker in receipts:
            member = _running_member(workflow_id, seq, attempt)
            self._receive(keys=[f"{self.prefix}:received", f"{self.prefix}:dispatched"],
                          args=[member, codec.encode({"run": run_id, "worker": worker})], client=pipe)
            pipe.zadd(f"{self.prefix}:received:until", {member: until})
        pipe.execute()

    def hold_receipts(self, held: list[tuple[str, int, int]]) -> None:
        """Renew the receipts of attempts whose messages this worker still holds (waiting, scheduled for
        a retry, or running): a receipt nobody renews lapses, and its attempt is dispatched again."""
        if held:
            until = time.time() + self.lease_seconds
            self.redis.zadd(f"{self.prefix}:received:until", {_running_member(*m): until for m in held}, xx=True)

    def dispatch_deadline(self, delay: float = 0.0) -> float:
        """When an attempt sent now (to start after `delay`) counts as lost if no worker has taken it."""
        return time.time() + delay + 2 * self.lease_seconds

    def undelivered(self, now: float, queued: Any, limit: int = 100) -> list[Lost]:
        """Attempts sent but taken by no worker by their deadline, and no longer in the broker's queue
        (a worker died holding the message, or the process that sent it died first). `queued(member)`
        says whether the message still waits in the broker; those get a later deadline. Should the
        broker not answer, the attempts found so far are returned (the rest wait for the next round)."""
        key = f"{self.prefix}:dispatched"
        out = []
        for member in self.redis.zrangebyscore(key, "-inf", now, start=0, num=limit):
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
        key, until_key = f"{self.prefix}:received", f"{self.prefix}:received:until"
        lapsed = self.redis.zrangebyscore(until_key, "-inf", now, start=0, num=limit)
        entries = self.redis.hgetall(key)
        infos = {member: codec.decode(raw) for member, raw in entries.items()}
        workers = sorted({info["worker"] for info in infos.values()})
        alive = self.redis.mget([f"{self.prefix}:worker:{w}" for w in workers]) if workers else []
        living = dict(zip(workers, alive, strict=True))
        lost = {member for member, info in infos.items() if living.get(info["worker"]) is None}
        lost.update(m for m in lapsed if m in infos)
        gone = [m for m in lapsed if m not in infos]  # receipts of attempts that started or finished since
        if gone:
            self.redis.zrem(until_key, *gone)
        out = []
        for member in lost:
            wid, seq, attempt = member.decode().rsplit("\x00", 2)
            out.append(Lost(wid, int(seq), int(attempt), infos[member], key, "h"))
        return out

    def expired_attempts(self, now: float, limit: int = 100) -> list[Lost]:
        """Attempts whose worker stopped renewing their lease."""
        key = f"{self.prefix}:running"
        members = self.redis.zrangebyscore(key, "-inf", now, start=0, num=limit)
        if not members:
            return []
        infos = self.redis.hmget(f"{key}:info", members)
        out = []
        for member, info in zip(members, infos, strict=True):
            wid, seq, attempt = member.decode().rsplit("\x00", 2)
            out.append(Lost(wid, int(seq), int(attempt), codec.decode(info) if info else {}, key, "z"))
        return out

    def reclaim(self, lost: Lost, failure: dict[str, Any]) -> bool:
        """Claim a lost attempt (exactly one caller gets it) and queue its failure for the coordinator,
        which decides on a new attempt under the retry policy; False when someone came first."""
        member = _running_member(lost.workflow_id, lost.seq, lost.attempt)
        message = {"k": "activity", "run": lost.info.get("run"), "seq": lost.seq, "attempt": lost.attempt,
                   "ok": False, "payload": failure, "lost": True}
        return bool(self._reclaim(
            keys=[lost.key, f"{self.prefix}:running:info", self.store.keys(lost.workflow_id)[2],
                  self.store.key(lost.workflow_id, "attempts"), f"{self.prefix}:dirty"],
            args=[member, lost.how, codec.encode(message), str(lost.seq), str(lost.attempt), repr(time.time()),
                  lost.workflow_id]))

    # --- timers -------------------------------------------------------------------------------------
    def arm(self, workflow_id: str, due: float, message: dict[str, Any]) -> None:
        member = workflow_id.encode() + b"\x00" + codec.encode(message)
        self.redis.zadd(f"{self.prefix}:timers", {member: due})

    def drain_timers(self, now: float, limit: int = 500) -> int:
        return int(self._drain(keys=[f"{self.prefix}:timers", f"{self.prefix}:wake", f"{self.prefix}:dirty"],
                               args=[repr(now), limit, self.prefix]))

    def sweep(self, now: float, grace: float = 2.0, limit: int = 500) -> list[str]:
        """Runs with messages waiting longer than `grace` and no coordinator: to be woken again."""
        got = self._sweep(keys=[f"{self.prefix}:dirty"], args=[repr(now - grace), repr(now), self.prefix, limit])
        return [w.decode() for w in got]

    def take_wakes(self, limit: int = 500) -> list[str]:
        raw = self.redis.spop(f"{self.prefix}:wake", limit) or []
        return [r.decode() for r in raw]

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


def _running_member(workflow_id: str, seq: int, attempt: int) -> str:
    return f"{workflow_id}\x00{seq}\x00{attempt}"
