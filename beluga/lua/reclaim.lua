-- reclaim.lua: the scheduler claims an activity attempt that looks lost (its lease or receipt lapsed,
-- its worker died, its message never reached a worker) for this caller alone and, in the same atomic
-- step, queues its failure for the coordinator and retires it (unless a later attempt was allowed
-- meanwhile): an outage between the claim and the report cannot lose the attempt.
--
-- KEYS
--   tracking_key      where the attempt was found: <t>:running, <t>:received or <t>:dispatched
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info
--   inbox_key         <t>:<id>:inbox, list of messages for the coordinator
--   attempts_key      <t>:<id>:attempts, hash: seq -> the attempt allowed to run
--   dirty_key         <t>:dirty, sorted set: workflow id -> when its inbox got a message
-- ARGV
--   member            the attempt, "<workflow id>\0<seq>\0<attempt>"
--   kind              'z' when tracking_key is a sorted set, 'h' when a hash
--   report            the encoded failure report
--   seq               the activity's seq
--   attempt           the attempt's number
--   now               the time, for the dirty mark
--   workflow_id       the run's workflow id
-- Returns 1 when claimed, 0 when another caller, or the attempt itself (started or reported), came first.

local tracking_key, running_info_key, inbox_key = KEYS[1], KEYS[2], KEYS[3]
local attempts_key, dirty_key = KEYS[4], KEYS[5]
local member, kind, report, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local attempt, now, workflow_id = ARGV[5], ARGV[6], ARGV[7]

local gone
if kind == 'z' then gone = redis.call('ZREM', tracking_key, member)
else gone = redis.call('HDEL', tracking_key, member) end
if gone == 0 then return 0 end
redis.call('HDEL', running_info_key, member)
redis.call('RPUSH', inbox_key, report)
redis.call('ZADD', dirty_key, now, workflow_id)
if redis.call('HGET', attempts_key, seq) == attempt then redis.call('HDEL', attempts_key, seq) end
return 1
