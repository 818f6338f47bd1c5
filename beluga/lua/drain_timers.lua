#!lua
-- drain_timers.lua: the scheduler moves a shard's due timer messages into their runs' inboxes
-- (Fleet.drain_timers). Each run that got one is marked dirty and added to the shard's wake set.
--
-- KEYS
--   timers_key   <t>:timers, sorted set: "<workflow id>\0<encoded message>" -> due time
--   wake_key     <t>:wake, set of workflow ids that need a coordinator
--   waking_key   <t>:waking, set while the shard's wake task is queued or running
--   dirty_key    <t>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   now          the time: timers due at or before it are drained
--   limit        how many timers to drain, at most
--   tag          the shard's tag <t>, to name each run's inbox <t>:<id>:inbox
--   ttl_ms       how long a wake task may stay queued before another is sent, in milliseconds
-- Returns {how many timers were drained, 1 when the caller must send the shard's wake task else 0}.

-- #include "lib/wake.lua"

local timers_key, wake_key, waking_key, dirty_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, limit, tag, ttl_ms = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local due = redis.call('ZRANGEBYSCORE', timers_key, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local sep = string.find(member, '\0', 1, true)
  local wid = string.sub(member, 1, sep - 1)
  redis.call('RPUSH', tag .. ':' .. wid .. ':inbox', string.sub(member, sep + 1))
  redis.call('SADD', wake_key, wid)
  redis.call('ZADD', dirty_key, now, wid)
  redis.call('ZREM', timers_key, member)
end
return {#due, wake_task_needed(wake_key, waking_key, ttl_ms)}
