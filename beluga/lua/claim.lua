-- claim.lua: a worker starts an activity attempt if it is still the one allowed (Fleet.claim).
-- The attempt's deadline (in dispatched_key, set by the append that dispatched it) moves to `expiry`:
-- the lease that the worker holding the message renews, or the heartbeat timeout.
--
-- KEYS
--   attempts_key      <p>:{id}:attempts, hash: seq -> the attempt allowed to run
--   dispatched_key    <p>:dispatched, sorted set: attempt member -> deadline
--   running_info_key  <p>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   beats_key         <p>:{id}:beats, hash: seq -> the last heartbeat details
-- ARGV
--   seq               the activity's seq
--   attempt           the attempt to start
--   member            "<workflow id>\0<seq>\0<attempt>"
--   expiry            the attempt's new deadline
--   info              the encoded info kept while it runs (run id, heartbeat timeout), or '' for none
-- Returns {} when the attempt is stale (its deadline is dropped all the same), else {1, the seq's last
-- heartbeat details or nil}.

local attempts_key, dispatched_key, running_info_key, beats_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local seq, attempt, member, expiry, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('HGET', attempts_key, seq) ~= attempt then
  redis.call('ZREM', dispatched_key, member)
  return {}
end
redis.call('ZADD', dispatched_key, expiry, member)
if info ~= '' then redis.call('HSET', running_info_key, member, info) end
return {1, redis.call('HGET', beats_key, seq)}
