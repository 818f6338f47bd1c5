#!lua
-- requeue.lua: the scheduler found an attempt past its deadline that no worker has taken (its message
-- waits in a queue that no live worker consumes, or behind a backlog, or was lost): for this caller
-- alone, give it a new deadline and its new waiting record (the caller then sends its message again,
-- or lets it wait on), or retire it when its run closed or moved on (Fleet.requeue).
--
-- KEYS
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> deadline
--   waiting_key       <t>:waiting, hash: attempt member -> its message, while no worker has taken it
--   run_key           <t>:<id>:run, hash: run_id, status, ...
-- ARGV
--   member            the attempt, "<workflow id>\0<seq>\0<attempt>"
--   deadline          the deadline the caller found lapsed; a renewed one is left alone
--   new_deadline      its next deadline
--   record            its new encoded waiting record
--   run_id            the run the attempt was sent for
-- Returns 1 when given the new deadline, -1 when retired, 0 when a worker, or another caller, came first.

local dispatched_key, waiting_key, run_key = KEYS[1], KEYS[2], KEYS[3]
local member, deadline, new_deadline, record, run_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local score = redis.call('ZSCORE', dispatched_key, member)
if not score or tonumber(score) > tonumber(deadline) or redis.call('HEXISTS', waiting_key, member) == 0 then
  return 0
end
local run = redis.call('HMGET', run_key, 'run_id', 'status')
if run[1] ~= run_id or run[2] ~= 'running' then
  redis.call('ZREM', dispatched_key, member)
  redis.call('HDEL', waiting_key, member)
  return -1
end
redis.call('ZADD', dispatched_key, 'XX', new_deadline, member)
redis.call('HSET', waiting_key, member, record)
return 1
