-- sweep.lua: the scheduler finds runs whose inbox has waited since before `cutoff` with no coordinator
-- holding their lease (a worker died mid-coordination, or a wake message was lost) (Fleet.sweep). Runs
-- whose inbox is empty are forgotten; the others are marked dirty again at `now`.
--
-- KEYS
--   dirty_key   <p>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   cutoff      only runs marked dirty at or before it are looked at
--   now         the time, their new dirty mark
--   prefix      the key prefix <p>, to name each run's inbox and lease
--   limit       how many runs to look at, at most
-- Returns the workflow ids to wake.

local dirty_key = KEYS[1]
local cutoff, now, prefix, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local out = {}
for _, wid in ipairs(redis.call('ZRANGEBYSCORE', dirty_key, '-inf', cutoff, 'LIMIT', 0, limit)) do
  local tag = prefix .. ':{' .. wid .. '}'
  if redis.call('LLEN', tag .. ':inbox') == 0 then
    redis.call('ZREM', dirty_key, wid)
  else
    redis.call('ZADD', dirty_key, now, wid)
    if redis.call('EXISTS', tag .. ':lease') == 0 then out[#out + 1] = wid end
  end
end
return out
