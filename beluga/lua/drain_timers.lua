-- drain_timers.lua: the scheduler moves due timer messages into their runs' inboxes
-- (Fleet.drain_timers). Each run that got one is marked to be woken and dirty.
--
-- KEYS
--   timers_key   <p>:timers, sorted set: "<workflow id>\0<encoded message>" -> due time
--   wake_key     <p>:wake, set of workflow ids that need a coordinator
--   dirty_key    <p>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   now          the time: timers due at or before it are drained
--   limit        how many timers to drain, at most
--   prefix       the key prefix <p>, to name each run's inbox <p>:{id}:inbox
-- Returns how many timers were drained.

local timers_key, wake_key, dirty_key = KEYS[1], KEYS[2], KEYS[3]
local now, limit, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local due = redis.call('ZRANGEBYSCORE', timers_key, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local sep = string.find(member, '\0', 1, true)
  local wid = string.sub(member, 1, sep - 1)
  redis.call('RPUSH', prefix .. ':{' .. wid .. '}:inbox', string.sub(member, sep + 1))
  redis.call('SADD', wake_key, wid)
  redis.call('ZADD', dirty_key, now, wid)
  redis.call('ZREM', timers_key, member)
end
return #due
