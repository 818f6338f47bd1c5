-- claim.lua: a worker starts an activity attempt if it is still the one allowed (Fleet.claim).
--
-- KEYS
--   attempts_key      <t>:<id>:attempts, hash: seq -> the attempt allowed to run
--   running_key       <t>:running, sorted set: attempt member -> lease expiry
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info
--   beats_key         <t>:<id>:beats, hash: seq -> the last heartbeat details
--   received_key      <t>:received, hash: attempt member -> encoded receipt
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> dispatch deadline
-- ARGV
--   seq               the activity's seq
--   attempt           the attempt to start
--   member            "<workflow id>\0<seq>\0<attempt>"
--   expiry            the attempt's lease expiry
--   info              the encoded info kept while it runs (run id, heartbeat timeout)
-- Returns {} when the attempt is stale (its receipt and dispatch records are dropped all the same),
-- else {1, the seq's last heartbeat details or nil}.

local attempts_key, running_key, running_info_key = KEYS[1], KEYS[2], KEYS[3]
local beats_key, received_key, dispatched_key = KEYS[4], KEYS[5], KEYS[6]
local seq, attempt, member, expiry, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

redis.call('HDEL', received_key, member)
redis.call('ZREM', dispatched_key, member)
if redis.call('HGET', attempts_key, seq) ~= attempt then return {} end
redis.call('ZADD', running_key, expiry, member)
redis.call('HSET', running_info_key, member, info)
return {1, redis.call('HGET', beats_key, seq)}
