"""Every Redis key name of Beluga's runs, shards and fleet, in one place (the store, the fleet and the
client build none of their own).

A run's keys and the fleet's records about it share its shard's hash tag `<p>:{s<n>}`, so that one
script may touch them all, also on a Redis Cluster:

    <t>:<id>:run, :events, :inbox     the run's hash, its events stream, its coordinator's inbox
    <t>:<id>:lease, :requests, :beats the coordinator's lease, client requests seen, heartbeat details
    <t>:dirty, :wake, :waking         runs with inputs waiting; runs to wake; the shard's waking lease
    <t>:dispatched, :running:info     attempts allowed to run (-> deadline) and what they need to run
    <t>:waiting, :timers              attempts waiting for a worker; the fleet's durable timers
    <t>:index:                        the shard's listing indexes (beluga/lua/lib/index.lua)

and beside them `<p>:{fleet}:*` (records of the whole fleet, read or written on their own),
`<p>:{schedules}:*` (the schedules: beluga/stores/redis_schedules.py), the `<p>:closed:{<id>}` channel a
run's close is announced on, and each activity limit's permits in a slot of their own,
`<p>:{L<digest of the limit's key>}:<key>:tat, :holders, :waiters, :slots, :starts`
(beluga/lua/permit.lua, start_gate.lua)."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

SHARDS = 16  # part of the key layout: every process must agree, and runs stay where they were put


def shard_of(workflow_id: str) -> int:
    """The shard of a workflow id: where its run's keys and the fleet's records about it live."""
    return zlib.crc32(workflow_id.encode()) % SHARDS


@dataclass(frozen=True)
class ShardKeys:
    """The keys of one shard: the fleet's records about its runs (see the module's docstring)."""

    tag: str  # `<p>:{s<n>}`

    def key(self, name: str) -> str:
        return f"{self.tag}:{name}"

    @property
    def dirty(self) -> str:
        return f"{self.tag}:dirty"

    @property
    def wake(self) -> str:
        return f"{self.tag}:wake"

    @property
    def waking(self) -> str:
        return f"{self.tag}:waking"

    @property
    def dispatched(self) -> str:
        return f"{self.tag}:dispatched"

    @property
    def running_info(self) -> str:
        return f"{self.tag}:running:info"

    @property
    def waiting(self) -> str:
        return f"{self.tag}:waiting"

    @property
    def timers(self) -> str:
        return f"{self.tag}:timers"

    @property
    def index_prefix(self) -> str:
        return f"{self.tag}:index:"


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run, and of its shard (`shard`)."""

    workflow_id: str
    shard: ShardKeys

    def key(self, name: str) -> str:
        return f"{self.shard.tag}:{self.workflow_id}:{name}"

    @property
    def run(self) -> str:
        return self.key("run")

    @property
    def events(self) -> str:
        return self.key("events")

    @property
    def inbox(self) -> str:
        return self.key("inbox")

    @property
    def lease(self) -> str:
        return self.key("lease")

    @property
    def requests(self) -> str:
        return self.key("requests")

    @property
    def beats(self) -> str:
        return self.key("beats")

    @property
    def attempts(self) -> str:
        """Written by no current Beluga; deleted with the run, for runs of older ones."""
        return self.key("attempts")


@dataclass(frozen=True)
class LimitKeys:
    """The permits of one activity limit (`core/limits.py`): its rate's theoretical arrival time, the
    attempts holding a concurrency permit (-> when it lapses) and the timers of attempts waiting for one."""

    base: str  # `<p>:{L<digest>}:<key>`

    @property
    def tat(self) -> str:
        return f"{self.base}:tat"

    @property
    def holders(self) -> str:
        return f"{self.base}:holders"

    @property
    def waiters(self) -> str:
        return f"{self.base}:waiters"

    @property
    def waiting(self) -> str:
        """Which attempt each waiter's timer member is (a returned permit is handed to it)."""
        return f"{self.base}:waiting"

    @property
    def starts(self) -> str:
        """The attempts that started lately (the start gate's)."""
        return f"{self.base}:starts"

    @property
    def slots(self) -> str:
        """Each attempt's reserved start (the rate's reservations)."""
        return f"{self.base}:slots"


@dataclass(frozen=True)
class KeyLayout:
    """The key names under one prefix."""

    prefix: str

    def shard(self, shard: int) -> ShardKeys:
        return ShardKeys(f"{self.prefix}:{{s{shard}}}")

    def shard_of(self, workflow_id: str) -> ShardKeys:
        return self.shard(shard_of(workflow_id))

    def run(self, workflow_id: str) -> RunKeys:
        return RunKeys(workflow_id, self.shard_of(workflow_id))

    def fleet(self, name: str) -> str:
        """A record of the whole fleet (`<p>:{fleet}:names:*`, ...), read or written on its own."""
        return f"{self.prefix}:{{fleet}}:{name}"

    def limit(self, key: str) -> LimitKeys:
        """The permits of the activity limit named `key` (any text: its hash tag is a digest of it)."""
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]
        return LimitKeys(f"{self.prefix}:{{L{digest}}}:{key}")
    def schedule(self, schedule_id: str) -> str:
        """A schedule's record (hash: version, data). Every schedule key shares the tag `{schedules}`, so one
        script writes a record and its places in the indexes below."""
        return f"{self.prefix}:{{schedules}}:s:{schedule_id}"

    @property
    def schedules_due(self) -> str:
        """Sorted set: schedule id -> when a worker should look at it next."""
        return f"{self.prefix}:{{schedules}}:due"

    @property
    def schedules_all(self) -> str:
        """Sorted set: every schedule id (score 0, read in id order)."""
        return f"{self.prefix}:{{schedules}}:all"

    def closed_channel(self, workflow_id: str) -> str:
        return f"{self.prefix}:closed:{{{workflow_id}}}"

    def reply_channel(self, token: str) -> str:
        """Where a client waits for the answer to one of its requests."""
        return f"{self.prefix}:reply:{token}"

    @property
    def old_index_prefix(self) -> str:
        """The listing indexes of Beluga before shards had their own (see RedisStore.upgrade)."""
        return f"{self.prefix}:index:"
