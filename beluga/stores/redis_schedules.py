"""The schedules of a RedisStore: a hash per schedule (version, encoded record) and two sorted sets (when to
look at each next; every id), all under the hash tag `{schedules}` (see redis_keys.KeyLayout), so that
`schedule_put.lua` checks the version and moves the record's place in both sets in one atomic step, on a
Redis Cluster too."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from beluga.core.schedules import Schedule, due_at
from beluga.lua import Call, Scripts, arg, key
from beluga.stores.schedule_store import ScheduleStore, decode, encode

if TYPE_CHECKING:
    from beluga.stores.redis import RedisStore


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePutCall(Call):
    """Write a schedule's record if at `expected_version`: 1 when written, else 0."""

    SCRIPT: ClassVar[str] = "schedule_put.lua"
    record_key: str = key()
    due_key: str = key()
    all_key: str = key()
    schedule_id: str = arg()
    expected_version: int = arg()
    data: bytes = arg()
    due: float | None = arg()


class RedisSchedules(ScheduleStore):
    def __init__(self, store: RedisStore) -> None:
        self._redis, self._names = store.redis, store.names
        self._lua = Scripts(self._redis, [SchedulePutCall])

    def put(self, s: Schedule, expected_version: int) -> Schedule | None:
        written = replace(s, version=expected_version + 1)
        n = self._names
        done = self._lua.run(SchedulePutCall(
            record_key=n.schedule(s.id), due_key=n.schedules_due, all_key=n.schedules_all, schedule_id=s.id,
            expected_version=expected_version, data=encode(written), due=due_at(written)))
        return written if int(done) == 1 else None

    def get(self, schedule_id: str) -> Schedule | None:
        data = self._redis.hget(self._names.schedule(schedule_id), "data")
        return decode(data) if data is not None else None

    def all(self) -> list[Schedule]:
        ids = [raw.decode() for raw in self._redis.zrange(self._names.schedules_all, 0, -1)]
        found = [self._redis.hget(self._names.schedule(sid), "data") for sid in ids]
        return [decode(data) for data in found if data is not None]

    def due(self, now: float, limit: int = 100) -> list[str]:
        return [raw.decode() for raw in self._redis.zrangebyscore(self._names.schedules_due, "-inf", now, 0, limit)]

    def remove(self, schedule_id: str) -> bool:
        n = self._names  # in this order, so a removal cut short leaves nothing that fires
        self._redis.zrem(n.schedules_due, schedule_id)
        existed = bool(self._redis.delete(n.schedule(schedule_id)))
        self._redis.zrem(n.schedules_all, schedule_id)
        return existed
