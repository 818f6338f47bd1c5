#!lua
-- claim.lua: a worker starts an activity attempt if it is still allowed, i.e. still has a deadline
-- (Fleet.claim): the append that dispatched it set one, and a report or a reclaim drops it. The deadline
-- moves to `expiry`: the lease that the worker holding the message renews, or the heartbeat timeout.
--
-- KEYS
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> deadline
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   beats_key         <t>:<id>:beats, hash: seq -> the last heartbeat details
-- ARGV
--   seq               the activity's seq
--   member            "<workflow id>\0<seq>\0<attempt>"
--   expiry            the attempt's new deadline
--   info              the encoded info kept while it runs (run id, heartbeat timeout), or '' for none
-- Returns {} when the attempt is stale, else {1, the seq's last heartbeat details or nil}.

local dispatched_key, running_info_key, beats_key = KEYS[1], KEYS[2], KEYS[3]
local seq, member, expiry, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if redis.call('ZADD', dispatched_key, 'XX', 'CH', expiry, member) == 0
    and not redis.call('ZSCORE', dispatched_key, member) then
  return {}
end
if info ~= '' then redis.call('HSET', running_info_key, member, info) end
return {1, redis.call('HGET', beats_key, seq)}
