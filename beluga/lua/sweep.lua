#!lua
-- sweep.lua: the scheduler finds a shard's runs whose inbox has waited since before `cutoff` with no
-- coordinator holding their lease (a worker died mid-coordination, or a wake-up was lost) and adds them to
-- the shard's wake set (Fleet.sweep). Runs whose inbox is empty are forgotten; the others are marked dirty
-- again at `now`. A wake set left without a task (the task was lost) gets one again.
--
-- KEYS
--   dirty_key   <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   wake_key    <t>:wake, set of workflow ids that need a coordinator
--   waking_key  <t>:waking, set while the shard's wake task is queued or running
-- ARGV
--   cutoff      only runs marked dirty at or before it are looked at
--   now         the time, their new dirty mark
--   tag         the shard's tag <t>, to name each run's inbox and lease
--   limit       how many runs to look at, at most
--   ttl_ms      how long a wake task may stay queued before another is sent, in milliseconds
-- Returns {how many runs were added to the wake set, 1 when the caller must send the shard's wake task
-- else 0}.

-- #include "lib/wake.lua"

local dirty_key, wake_key, waking_key = KEYS[1], KEYS[2], KEYS[3]
local cutoff, now, tag, limit, ttl_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

local woken = 0
for _, wid in ipairs(redis.call('ZRANGEBYSCORE', dirty_key, '-inf', cutoff, 'LIMIT', 0, limit)) do
  local run = tag .. ':' .. wid
  if redis.call('LLEN', run .. ':inbox') == 0 then
    redis.call('ZREM', dirty_key, wid)
  else
    redis.call('ZADD', dirty_key, now, wid)
    if redis.call('EXISTS', run .. ':lease') == 0 then
      woken = woken + redis.call('SADD', wake_key, wid)
    end
  end
end
return {woken, wake_task_needed(wake_key, waking_key, ttl_ms)}
