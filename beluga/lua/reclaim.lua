#!lua
-- reclaim.lua: the scheduler claims an activity attempt that looks lost (its deadline passed: its
-- worker stopped renewing it, or no heartbeat came, or it waited for a worker past its
-- schedule_to_start_timeout)
-- for this caller alone and, in the same atomic step, retires it (drops its deadline) and queues its
-- failure for the coordinator: an outage between the claim and the report cannot lose the attempt.
--
-- KEYS
--   dispatched_key    <t>:dispatched, sorted set: attempt member -> deadline
--   running_info_key  <t>:running:info, hash: attempt member -> encoded info (heartbeat attempts only)
--   inbox_key         <t>:<id>:inbox, list of messages for the coordinator
--   dirty_key         <t>:dirty, sorted set: workflow id -> when its inbox got a message
--   waiting_key       <t>:waiting, hash: attempt member -> its message, while no worker has taken it
-- ARGV
--   member            the attempt, "<workflow id>\0<seq>\0<attempt>"
--   deadline          the deadline the caller found lapsed; a renewed one is left alone
--   report            the encoded failure report
--   now               the time, for the dirty mark
--   workflow_id       the run's workflow id
-- Returns 1 when claimed, 0 when another caller, or the attempt itself (renewed or reported), came first.

local dispatched_key, running_info_key, inbox_key, dirty_key, waiting_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, deadline, report, now, workflow_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local score = redis.call('ZSCORE', dispatched_key, member)
if not score or tonumber(score) > tonumber(deadline) then return 0 end
redis.call('ZREM', dispatched_key, member)
redis.call('HDEL', running_info_key, member)
redis.call('HDEL', waiting_key, member)
redis.call('RPUSH', inbox_key, report)
redis.call('ZADD', dirty_key, now, workflow_id)
return 1
