#!lua
-- return_permit.lua: an activity attempt ended (its outcome was recorded, or its run closed): its
-- concurrency permit is returned, and the attempt that has waited longest for one is taken off the
-- waiters, for the caller to wake (its timer moved to now: the timers are in its run's shard).
--
-- KEYS
--   holders_key   <L>:holders, sorted set: attempt holding a concurrency permit -> when it lapses
--   waiters_key   <L>:waiters, sorted set: timer member of an attempt waiting -> when it began to wait
-- ARGV
--   holder        the attempt that ended
-- Returns the timer member of the waiter to wake, or false when none (or the attempt held no permit).

local holders_key, waiters_key = KEYS[1], KEYS[2]
local holder = ARGV[1]

if redis.call('ZREM', holders_key, holder) == 0 then return false end
local first = redis.call('ZPOPMIN', waiters_key)
return first[1] or false
