#!lua
-- take_wakes.lua: the shard's wake task takes the next runs to coordinate (Fleet.take_wakes). While it
-- finds some it keeps the shard's waking lease; once the set is empty it lets go in the same step, so a
-- run added after that sends a new task (wake.lua), and one added before is taken here. A task that
-- means to look once more shortly (`keep`) keeps the lease through an empty set, so that the runs woken
-- meanwhile send no task of their own.
--
-- KEYS
--   wake_key      <t>:wake, set of workflow ids that need a coordinator
--   waking_key    <t>:waking, set while the shard's wake task is queued or running
-- ARGV
--   limit         how many runs to take, at most
--   ttl_ms        the waking lease's new time to live, in milliseconds
--   keep          '1': an empty set keeps the lease (the caller looks again shortly), '' releases it
-- Returns the workflow ids taken; none when the set was empty (and the lease is released unless kept).

local wake_key, waking_key = KEYS[1], KEYS[2]
local limit, ttl_ms, keep = tonumber(ARGV[1]), ARGV[2], ARGV[3]

local got = redis.call('SPOP', wake_key, limit)
if #got == 0 and keep ~= '1' then
  redis.call('DEL', waking_key)
else
  redis.call('SET', waking_key, '1', 'PX', ttl_ms)
end
return got
