#!lua
-- return_permit.lua: an activity attempt ended (its outcome was recorded, or its run closed): its
-- concurrency permit is returned (or, for an attempt that was still waiting, its place among the
-- waiters), and handed to the first waiter in order (the lowest score: its priority, aged by how long it
-- has waited, core/priority.py; beluga/core/limits.py `give_back`, which this mirrors), which holds it
-- for `hold` seconds until it asks again; its timer member is returned for the caller to wake it.
--
-- KEYS
--   holders_key   <L>:holders, sorted set: attempt holding a concurrency permit -> when it lapses
--   waiters_key   <L>:waiters, sorted set: timer member of an attempt waiting -> its order
--   waiting_key   <L>:waiting, hash: timer member of an attempt waiting -> the attempt
-- ARGV
--   holder        the attempt that ended
--   own           its own timer member (taken off the waiters, should it have waited)
--   now           the fleet's time
--   hold          how long a handed permit lasts should its waiter never ask
-- Returns the timer member of the waiter handed the permit, or false when none (or the attempt held none).

local holders_key, waiters_key, waiting_key = KEYS[1], KEYS[2], KEYS[3]
local holder, own, now, hold = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('ZREM', waiters_key, own) == 1 then redis.call('HDEL', waiting_key, own) end
if redis.call('ZREM', holders_key, holder) == 0 then return false end
while true do
  local first = redis.call('ZPOPMIN', waiters_key)
  if not first[1] then return false end
  local next_holder = redis.call('HGET', waiting_key, first[1])
  redis.call('HDEL', waiting_key, first[1])
  if next_holder then
    redis.call('ZADD', holders_key, now + hold, next_holder)
    return first[1]
  end
end
