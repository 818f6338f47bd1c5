#!lua
-- start_gate.lua: the last check of an activity's rate, where its attempt runs, right before it starts
-- (beluga/core/limits.py `start_gate`, which this mirrors): at most `count` starts in any `window`
-- seconds, by this server's clock. The starts permit.lua reserved keep to that already; this absorbs what
-- made one late or early (a busy worker, a broker's hop).
--
-- KEYS
--   starts_key    <L>:starts, sorted set: attempt -> when it started
-- ARGV
--   count         starts allowed in any window
--   window        the window, in seconds
--   holder        the attempt starting, "<workflow id>\x1f<run id>\x1f<seq>\x1f<attempt>"
-- Returns "0" when it may start now (recorded), else the seconds to wait, as a string.

local starts_key = KEYS[1]
local count, window, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', starts_key, '-inf', now - window)
if redis.call('ZCARD', starts_key) < count then
  redis.call('ZADD', starts_key, now, holder)
  redis.call('PEXPIRE', starts_key, math.ceil(window * 1000) + 1000)
  return '0'
end
local first = redis.call('ZRANGE', starts_key, 0, 0, 'WITHSCORES')
return string.format('%.6f', tonumber(first[2]) + window - now)
