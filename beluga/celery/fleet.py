"""The fleet's shared Redis state beside the histories: run inboxes, coordinator leases, the timer set,
activity attempts and leases. One place owns every key name.

- inbox `<p>:{id}:inbox`: messages for the coordinator (signal, cancel, activity result, timer, ...)
- lease `<p>:{id}:lease`: the one coordinator allowed to append to the run
- attempts `<p>:{id}:attempts`: seq -> the attempt that may run now (stale deliveries are dropped)
- `<p>:timers`: due time -> message, drained into inboxes by the scheduler
- `<p>:running`: activity attempts in flight -> lease expiry, renewed while the worker lives
- `<p>:wake`: runs whose inbox got messages from the scheduler and still need a coordinator
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from beluga import codec
from beluga.stores.redis import RedisStore

# KEYS: timers, wake. ARGV: now, limit, prefix. Moves due timer messages into their runs' inboxes.
_DRAIN_TIMERS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, '\\0', 1, true)
  local wid = string.sub(member, 1, sep - 1)
  redis.call('RPUSH', ARGV[3] .. ':{' .. wid .. '}:inbox', string.sub(member, sep + 1))
  redis.call('SADD', KEYS[2], wid)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Fleet:
    def __init__(self, store: RedisStore, lease_seconds: float = 15.0) -> None:
        self.store = store
        self.redis = store.redis
        self.prefix = store.prefix
        self.lease_seconds = lease_seconds
        self._drain = self.redis.register_script(_DRAIN_TIMERS)
        self._release = self.redis.register_script(_RELEASE)

    # --- inbox --------------------------------------------------------------------------------------
    def push(self, workflow_id: str, message: dict[str, Any]) -> None:
        self.redis.rpush(self.store.keys(workflow_id)[2], codec.encode(message))

    def inbox(self, workflow_id: str, limit: int = 100) -> list[bytes]:
        return self.redis.lrange(self.store.keys(workflow_id)[2], 0, limit - 1)

    def inbox_size(self, workflow_id: str) -> int:
        return int(self.redis.llen(self.store.keys(workflow_id)[2]))

    # --- coordinator lease --------------------------------------------------------------------------
    def acquire(self, workflow_id: str, ttl: float = 60.0) -> str | None:
        token = uuid.uuid4().hex
        ok = self.redis.set(self.store.key(workflow_id, "lease"), token, nx=True, px=int(ttl * 1000))
        return token if ok else None

    def release(self, workflow_id: str, token: str) -> None:
        self._release(keys=[self.store.key(workflow_id, "lease")], args=[token])

    # --- activity attempts --------------------------------------------------------------------------
    def allow_attempt(self, workflow_id: str, seq: int, attempt: int) -> None:
        self.redis.hset(self.store.key(workflow_id, "attempts"), str(seq), attempt)

    def current_attempt(self, workflow_id: str, seq: int) -> int | None:
        raw = self.redis.hget(self.store.key(workflow_id, "attempts"), str(seq))
        return int(raw) if raw is not None else None

    def finish_attempt(self, workflow_id: str, seq: int, attempt: int, message: dict[str, Any],
                       next_attempt: int | None = None) -> None:
        """Report an attempt's outcome and retire it in one transaction, so that a redelivery of the
        same task message (the worker died before acking) sees it retired and does not run again."""
        member = _running_member(workflow_id, seq, attempt)
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(self.store.keys(workflow_id)[2], codec.encode(message))
        if next_attempt is None:
            pipe.hdel(self.store.key(workflow_id, "attempts"), str(seq))
        else:
            pipe.hset(self.store.key(workflow_id, "attempts"), str(seq), next_attempt)
        pipe.zrem(f"{self.prefix}:running", member)
        pipe.hdel(f"{self.prefix}:running:info", member)
        pipe.execute()

    def hold_lease(self, workflow_id: str, seq: int, attempt: int, details: dict[str, Any]) -> None:
        member = _running_member(workflow_id, seq, attempt)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(f"{self.prefix}:running", {member: time.time() + self.lease_seconds})
        pipe.hset(f"{self.prefix}:running:info", member, codec.encode(details))
        pipe.execute()

    def renew(self, members: list[tuple[str, int, int]]) -> None:
        if members:
            expiry = time.time() + self.lease_seconds
            self.redis.zadd(f"{self.prefix}:running",
                            {_running_member(*m): expiry for m in members}, xx=True)

    def expired_attempts(self, now: float, limit: int = 100) -> list[tuple[str, int, int, dict[str, Any]]]:
        """Attempts whose worker stopped renewing: each is claimed by exactly one caller."""
        key = f"{self.prefix}:running"
        out = []
        for member in self.redis.zrangebyscore(key, "-inf", now, start=0, num=limit):
            if self.redis.zrem(key, member):
                info = self.redis.hget(f"{key}:info", member)
                self.redis.hdel(f"{key}:info", member)
                wid, seq, attempt = member.decode().rsplit("\x00", 2)
                out.append((wid, int(seq), int(attempt), codec.decode(info) if info else {}))
        return out

    # --- timers -------------------------------------------------------------------------------------
    def arm(self, workflow_id: str, due: float, message: dict[str, Any]) -> None:
        member = workflow_id.encode() + b"\x00" + codec.encode(message)
        self.redis.zadd(f"{self.prefix}:timers", {member: due})

    def drain_timers(self, now: float, limit: int = 500) -> int:
        return int(self._drain(keys=[f"{self.prefix}:timers", f"{self.prefix}:wake"],
                               args=[repr(now), limit, self.prefix]))

    def take_wakes(self, limit: int = 500) -> list[str]:
        raw = self.redis.spop(f"{self.prefix}:wake", limit) or []
        return [r.decode() for r in raw]

    # --- query replies ------------------------------------------------------------------------------
    def reply(self, key: str, value: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, codec.encode(value))
        pipe.expire(key, 60)
        pipe.execute()

    def wait_reply(self, key: str, timeout: float) -> dict[str, Any] | None:
        got = self.redis.blpop([key], timeout=max(1, int(timeout + 0.999)))
        return None if got is None else codec.decode(got[1])


def _running_member(workflow_id: str, seq: int, attempt: int) -> str:
    return f"{workflow_id}\x00{seq}\x00{attempt}"
