#!lua
-- permit.lua: an activity attempt asks for a permit of its limit (beluga/core/limits.py `take`, which
-- this mirrors): a concurrency permit first (a leased semaphore), then one start of the rate (GCRA), so a
-- refused attempt spends no rate. A refused attempt waits on its run's durable timer until the time
-- answered; one refused for concurrency is also listed as a waiter, woken when a permit is returned
-- (return_permit.lua).
--
-- KEYS
--   tat_key       <L>:tat, string: the rate's theoretical arrival time of the next start
--   holders_key   <L>:holders, sorted set: attempt holding a concurrency permit -> when the permit lapses
--   waiters_key   <L>:waiters, sorted set: timer member of an attempt waiting -> when it began to wait
-- ARGV
--   now           the fleet's time
--   interval      seconds between starts (0: no rate)
--   burst         starts allowed at once
--   max_concurrent  permits at most held (0: no concurrency limit)
--   holder        the attempt asking, "<workflow id>\x1f<run id>\x1f<seq>\x1f<attempt>"
--   lease         seconds a permit lasts should its attempt's end never be recorded
--   poll          the longest a waiter for a concurrency permit waits before asking again
--   waiter        the attempt's timer member, listed while it waits for a concurrency permit
-- Returns {0} when granted, else {1, the time to ask again (as a string), "rate" or "concurrency"}.

local tat_key, holders_key, waiters_key = KEYS[1], KEYS[2], KEYS[3]
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_concurrent, holder, lease = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local poll, waiter = tonumber(ARGV[7]), ARGV[8]

if max_concurrent > 0 then
  redis.call('ZREMRANGEBYSCORE', holders_key, '-inf', now)
  if redis.call('ZSCORE', holders_key, holder) then return {0} end
  if redis.call('ZCARD', holders_key) >= max_concurrent then
    local first = redis.call('ZRANGE', holders_key, 0, 0, 'WITHSCORES')
    local ask = math.min(tonumber(first[2]), now + poll)
    redis.call('ZADD', waiters_key, 'NX', now, waiter)
    return {1, string.format('%.6f', ask), 'concurrency'}
  end
end
if interval > 0 then
  local tat = tonumber(redis.call('GET', tat_key) or '0')
  local allowed_at = tat - (burst - 1) * interval
  if now < allowed_at then return {1, string.format('%.6f', allowed_at), 'rate'} end
  redis.call('SET', tat_key, string.format('%.6f', math.max(tat, now) + interval))
end
if max_concurrent > 0 then
  redis.call('ZADD', holders_key, now + lease, holder)
  redis.call('ZREM', waiters_key, waiter)
end
return {0}
