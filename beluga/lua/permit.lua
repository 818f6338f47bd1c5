#!lua
-- permit.lua: an activity attempt asks for a permit of its limit (beluga/core/limits.py `take`, which
-- this mirrors): a concurrency permit first (a leased semaphore), so a refused attempt reserves no start;
-- then its start by the rate (a GCRA with reservations: each permit reserves the next free start). A
-- start further than `horizon` away, and a refusal for concurrency, wait on the run's durable timer; one
-- refused for concurrency is also listed as a waiter, in order (its `score`: its priority, aged by how
-- long it has waited, core/priority.py), and is handed a permit when one is returned (return_permit.lua).
-- It gets a free permit only when fewer waiters are ahead of it than permits are free. An attempt that
-- asks again keeps the permit it holds (or was handed), its place among the waiters and the start it
-- reserved.
--
-- KEYS
--   tat_key       <L>:tat, string: the rate's theoretical arrival time of the next start
--   holders_key   <L>:holders, sorted set: attempt holding a concurrency permit -> when the permit lapses
--   waiters_key   <L>:waiters, sorted set: timer member of an attempt waiting -> its order (the lowest first)
--   slots_key     <L>:slots, sorted set: attempt -> the start it reserved
--   waiting_key   <L>:waiting, hash: timer member of an attempt waiting -> the attempt
-- ARGV
--   now           the fleet's time
--   interval      seconds between starts (0: no rate)
--   burst         starts that may be due at once
--   max_concurrent  permits at most held (0: no concurrency limit)
--   holder        the attempt asking, "<workflow id>\x1f<run id>\x1f<seq>\x1f<attempt>"
--   lease         seconds a permit lasts past its start should its attempt's end never be recorded
--   poll          the longest a waiter for a concurrency permit waits before asking again
--   horizon       a reserved start further away than this waits on the durable timer ...
--   lead          ... until this long before it
--   kept          seconds a reserved start is remembered after it passed
--   waiter        the attempt's timer member, listed while it waits for a concurrency permit
--   score         its order should it begin to wait now (core/priority.py waiter_score)
-- Returns {0, start} when granted (start: now or the reserved start, as a string), else {1, the time to ask
-- again (as a string), "rate" or "concurrency"}.

local tat_key, holders_key, waiters_key, slots_key, waiting_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_concurrent, holder, lease = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local poll, horizon, lead = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local kept, waiter, score = tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])

local held = false
if max_concurrent > 0 then
  redis.call('ZREMRANGEBYSCORE', holders_key, '-inf', now)
  held = redis.call('ZSCORE', holders_key, holder) ~= false
  if not held then
    local mine = tonumber(redis.call('ZSCORE', waiters_key, waiter) or score)
    local ahead = redis.call('ZCOUNT', waiters_key, '-inf', '(' .. string.format('%.6f', mine))
    if ahead >= max_concurrent - redis.call('ZCARD', holders_key) then
      local first = redis.call('ZRANGE', holders_key, 0, 0, 'WITHSCORES')
      local again = now + poll
      if first[2] then again = math.min(tonumber(first[2]), again) end
      redis.call('ZADD', waiters_key, 'NX', mine, waiter)
      redis.call('HSET', waiting_key, waiter, holder)
      return {1, string.format("%.6f", again), "concurrency"}
    end
  end
end
local start = now
if interval > 0 then
  redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', now - kept)
  local mine = redis.call('ZSCORE', slots_key, holder)
  if mine then
    start = tonumber(mine)
  else
    local tat = tonumber(redis.call('GET', tat_key) or '0')
    start = math.max(now, tat - (burst - 1) * interval)
    redis.call('SET', tat_key, string.format('%.6f', math.max(tat, start) + interval))
    redis.call('ZADD', slots_key, start, holder)
  end
end
if max_concurrent > 0 then
  redis.call('ZADD', holders_key, math.max(start, now) + lease, holder)
  redis.call('ZREM', waiters_key, waiter)
  redis.call('HDEL', waiting_key, waiter)
end
if start - now > horizon then return {1, string.format('%.6f', start - lead), 'rate'} end
return {0, string.format('%.6f', math.max(start, now))}
