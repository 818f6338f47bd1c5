#!lua
-- claim.lua: a worker starts an activity attempt if it is still allowed and no worker took it before
-- (Fleet.claim): it has a deadline (the append that dispatched it set one; a report or a reclaim drops
-- it), its message's sender marked it waiting for a worker (`waiting_key`: this claim drops the mark, so
-- a duplicate or a redelivery of the message finds none), and its run is still the run it was sent for,
-- open. An attempt whose run closed or moved on is retired here. The deadline moves to `expiry`: the
-- lease that the worker holding the message renews, or the heartbeat timeout.
--
-- KEYS
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> deadline
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   beats_key         <t>:<id>:beats, hash: seq -> the last heartbeat details
--   waiting_key       <t>:waiting, hash: attempt member -> its message, while no worker has taken it
--   run_key           <t>:<id>:run, hash: run_id, status, ...
-- ARGV
--   seq               the activity's seq
--   member            "<workflow id>\0<seq>\0<attempt>"
--   expiry            the attempt's new deadline
--   info              the encoded info kept while it runs (run id, heartbeat timeout), or '' for none
--   run_id            the run the attempt was sent for
-- Returns {} when the attempt is stale, else {1, the seq's last heartbeat details or nil}.

local dispatched_key, running_info_key, beats_key, waiting_key, run_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local seq, member, expiry, info, run_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if not redis.call('ZSCORE', dispatched_key, member) then return {} end
local run = redis.call('HMGET', run_key, 'run_id', 'status')
if run[1] ~= run_id or run[2] ~= 'running' then
  redis.call('ZREM', dispatched_key, member)
  redis.call('HDEL', waiting_key, member)
  return {}
end
if redis.call('HDEL', waiting_key, member) == 0 then return {} end
redis.call('ZADD', dispatched_key, 'XX', expiry, member)
if info ~= '' then redis.call('HSET', running_info_key, member, info) end
return {1, redis.call('HGET', beats_key, seq)}
